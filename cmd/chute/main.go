// Command chute mounts object-store buckets as folders and moves their bytes
// over a fast, encrypted UDP transfer protocol.
//
// Each subcommand lives in its own cmd_<name>.go file: an options struct with
// AddFlags(*pflag.FlagSet), and a run function that tests call directly.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"syscall"

	"github.com/spf13/pflag"
)

// command is one subcommand.
type command struct {
	Name    string
	Usage   string // one line: "cp [flags] SOURCE... DEST"
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
	Stdin          io.Reader
	Getenv         func(string) string
	Logger         *slog.Logger
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks bad command-line use (exit status 2).
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Getenv: os.Getenv}
	stopProfile := startProfile(os.Getenv("CHUTE_CPUPROFILE"))
	code := run(ctx, env, os.Args[1:])
	stopProfile()
	os.Exit(code)
}

// startProfile writes a CPU profile of this process to PREFIX.<pid> when
// CHUTE_CPUPROFILE=PREFIX is set (for finding where a transfer's time
// goes: go tool pprof bin/chute PREFIX.<pid>).
func startProfile(prefix string) (stop func()) {
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "." + strconv.Itoa(os.Getpid()))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chute: CHUTE_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// run runs one chute invocation and returns its exit status.
func run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(env.Stdout, "chute", version)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "chute: unknown command %q (see chute help)\n", args[0])
		return 2
	}
	fs := pflag.NewFlagSet("chute "+c.Name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	var verbose, debug bool
	fs.BoolVarP(&verbose, "verbose", "v", false, "log more (info level)")
	fs.BoolVar(&debug, "debug", false, "log everything (debug level)")
	if c.Flags != nil {
		c.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: chute %s\n\n%s\n\nflags:\n%s", c.Usage, c.Summary, fs.FlagUsages())
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	if debug {
		level = slog.LevelDebug
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	}
	err := c.Run(ctx, env, fs.Args())
	if err == nil {
		return 0
	}
	fmt.Fprintf(env.Stderr, "chute %s: %v\n", c.Name, err)
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.code == 2 {
			fmt.Fprintf(env.Stderr, "usage: chute %s\n", c.Usage)
		}
		return ee.code
	}
	return 1
}

const version = "0.1.0"

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "chute: mount object-store buckets as folders; move their bytes over fast, encrypted UDP")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'chute COMMAND --help' for a command's flags.")
	fmt.Fprintln(w, "Remote locations look like chute://[user@]host[:port]/bucket[/key]; the port defaults to 33001.")

}
