package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/internal/linkem"
)

type setOptions struct {
	link linkFlags
	name string
}

func (o *setOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.name, "name", "", "emulator name (required)")
	o.link.AddFlags(fs)
}

func init() {
	o := &setOptions{}
	register(&command{
		Name:    "set",
		Usage:   "set --name X [--rtt D] [--loss P] [--rate R] [...]",
		Summary: "change a running emulator's link; flags not given keep their values",
		Flags:   o.AddFlags,
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			return runSet(ctx, env, o)
		},
	})
	so := &statsOptions{}
	register(&command{
		Name:    "stats",
		Usage:   "stats --name X [--json]",
		Summary: "print a running emulator's link and counters",
		Flags:   so.AddFlags,
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			return runStats(ctx, env, so)
		},
	})
}

func runSet(ctx context.Context, env *Env, o *setOptions) error {
	if o.name == "" {
		return usagef("--name is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cur, err := callControl(ctx, o.name, request{Op: "get"})
	if err != nil {
		return err
	}
	up, down := cur.NearToFar, cur.FarToNear
	if err := o.link.apply(&up, &down, false); err != nil {
		return err
	}
	rep, err := callControl(ctx, o.name, request{Op: "set", NearToFar: &up, FarToNear: &down})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "near→far: %s\nfar→near: %s\n", describe(rep.NearToFar), describe(rep.FarToNear))
	return nil
}

type statsOptions struct {
	name string
	json bool
}

func (o *statsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.name, "name", "", "emulator name (required)")
	fs.BoolVar(&o.json, "json", false, "print as JSON")
}

func runStats(ctx context.Context, env *Env, o *statsOptions) error {
	if o.name == "" {
		return usagef("--name is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := callControl(ctx, o.name, request{Op: "get"})
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(env.Stdout).Encode(struct {
			Info      linkem.Info  `json:"info"`
			NearToFar linkem.Link  `json:"near_to_far"`
			FarToNear linkem.Link  `json:"far_to_near"`
			Stats     linkem.Stats `json:"stats"`
		}{rep.Info, rep.NearToFar, rep.FarToNear, rep.Stats})
	}
	fmt.Fprintf(env.Stdout, "near→far: %s\nfar→near: %s\n", describe(rep.NearToFar), describe(rep.FarToNear))
	printStats(env.Stdout, rep.Stats)
	return nil
}
