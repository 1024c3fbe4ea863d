// Command linkem runs chute's link emulator for scripts and benchmarks:
// two network namespaces joined by an emulated wide-area link (delay,
// jitter, loss, rate, queue), so that a server started in one with
// `nsenter --net=/run/netns/NAME` and a client started in the other talk
// across it.
//
//	linkem up --rtt 100ms --loss 2% --rate 200mbit --name wan --json &
//	nsenter --net=/run/netns/chute-wan-far iperf3 -s &
//	nsenter --net=/run/netns/chute-wan-near iperf3 -c 10.201.X.2
//	linkem set --name wan --rtt 50ms
//	linkem down --name wan
//
// The namespaces start with the host's TCP buffer limits; a common 4 MiB
// maximum send buffer (net.ipv4.tcp_wmem) caps one flow near 0.5 Gbit/s
// at 50 ms. For long fat paths raise the limits inside:
//
//	linkem up --rtt 200ms --rate 1gbit \
//	    --sysctl "net.ipv4.tcp_rmem=4096 131072 67108864" \
//	    --sysctl "net.ipv4.tcp_wmem=4096 16384 67108864"
//
// Each subcommand lives in its own cmd_<name>.go file: flags, then a run
// function that tests call directly.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/spf13/pflag"
)

// command is one subcommand.
type command struct {
	Name    string
	Usage   string // one line: "up [flags]"
	Summary string // one line for the command list
	// Flags adds the subcommand's flags to fs; Run runs it with the
	// remaining arguments.
	Flags func(fs *pflag.FlagSet)
	Run   func(ctx context.Context, env *Env, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.Name] = c }

// Env is what a subcommand may touch of the outside world; tests replace it.
type Env struct {
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// usageError marks bad command-line use (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Stdout: os.Stdout, Stderr: os.Stderr}
	os.Exit(run(ctx, env, os.Args[1:]))
}

// run runs one linkem invocation and returns its exit status.
func run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "linkem: unknown command %q (see linkem help)\n", args[0])
		return 2
	}
	fs := pflag.NewFlagSet("linkem "+c.Name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	var quiet bool
	fs.BoolVarP(&quiet, "quiet", "q", false, "log warnings and errors only")
	if c.Flags != nil {
		c.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: linkem %s\n\n%s\n\nflags:\n%s", c.Usage, c.Summary, fs.FlagUsages())
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	}
	err := c.Run(ctx, env, fs.Args())
	if err == nil {
		return 0
	}
	fmt.Fprintf(env.Stderr, "linkem %s: %v\n", c.Name, err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "usage: linkem %s\n", c.Usage)
		return 2
	}
	return 1
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "linkem: emulate a wide-area link (delay, jitter, loss, rate) between two network namespaces")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'linkem COMMAND --help' for a command's flags. Needs root.")
	fmt.Fprintln(w, "Start programs inside with: nsenter --net=/run/netns/chute-NAME-far PROGRAM ...")
}
