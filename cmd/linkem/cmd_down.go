package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/internal/linkem"
)

type downOptions struct {
	name    string
	timeout time.Duration
}

func (o *downOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.name, "name", "", "emulator name (required)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for a running emulator to stop")
}

type listOptions struct{ json bool }

func (o *listOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print as JSON, one object per line")
}

func init() {
	o := &downOptions{}
	register(&command{
		Name:    "down",
		Usage:   "down --name X",
		Summary: "stop the named emulator (SIGTERM to its owner) or remove what a dead one left",
		Flags:   o.AddFlags,
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if o.name == "" {
				return usagef("--name is required")
			}
			ctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			return linkem.Down(ctx, o.name, env.Logger)
		},
	})
	register(&command{
		Name:    "cleanup",
		Usage:   "cleanup",
		Summary: "remove the namespaces and records of emulators whose owner died",
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			removed, err := linkem.Cleanup(env.Logger)
			for _, n := range removed {
				fmt.Fprintln(env.Stdout, "removed", n)
			}
			return err
		},
	})
	lo := &listOptions{}
	register(&command{
		Name:    "list",
		Usage:   "list [--json]",
		Summary: "list the emulators on this machine",
		Flags:   lo.AddFlags,
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			infos, err := linkem.List()
			if err != nil {
				return err
			}
			for _, in := range infos {
				if lo.json {
					json.NewEncoder(env.Stdout).Encode(in)
					continue
				}
				state := "dead (linkem cleanup removes it)"
				if in.Alive {
					state = fmt.Sprintf("running, pid %d", in.PID)
				}
				fmt.Fprintf(env.Stdout, "%s: near %s %s, far %s %s, %s\n", in.Name,
					in.Near.Netns, in.Near.Addr, in.Far.Netns, in.Far.Addr, state)
			}
			return nil
		},
	})
}
