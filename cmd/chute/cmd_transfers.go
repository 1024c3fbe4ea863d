package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/engine"
)

type transfersOptions struct {
	json   bool
	target string
	min    string
	policy string
}

func init() {
	o := &transfersOptions{}
	register(&command{
		Name:  "transfers",
		Usage: "transfers MOUNTPOINT [list | pause ID | resume ID | cancel ID | rate [ID] --target-rate R [--min-rate R] [--policy P]]",
		Summary: "list a running mount's transfers, pause, resume or cancel one, or change rates " +
			"(a transfer's target, or the whole mount's target, minimum and policy)",
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&o.json, "json", false, "print the transfers as JSON")
			fs.StringVarP(&o.target, "target-rate", "l", "", "with rate: the new target, bits/s (k/m/g suffixes)")
			fs.StringVarP(&o.min, "min-rate", "m", "", "with rate and no ID: the mount's new minimum")
			fs.StringVar(&o.policy, "policy", "", "with rate and no ID: the mount's new policy (fixed, fair, high, low)")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runTransfers(ctx, env, o, args) },
	})
}

// controlPath is where a mount's control socket lives, beside its record.
func controlPath(env *Env, mp string) string {
	return filepath.Join(mountRecordDir(env), mountID(mp)+".sock")
}

func runTransfers(ctx context.Context, env *Env, o *transfersOptions, args []string) error {
	if len(args) == 0 {
		return usageError("transfers needs the mount point")
	}
	mp, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	req := controlReq{Op: "list"}
	rest := args[1:]
	if len(rest) > 0 {
		req.Op = rest[0]
		rest = rest[1:]
	}
	switch req.Op {
	case "list":
	case "pause", "resume", "cancel":
		if len(rest) != 1 {
			return usageError("%s needs a transfer ID (see chute transfers %s)", req.Op, args[0])
		}
		req.ID = rest[0]
	case "rate":
		if len(rest) > 1 {
			return usageError("rate takes at most one transfer ID")
		}
		if len(rest) == 1 {
			req.ID = rest[0]
		}
		if o.target == "" && o.min == "" && o.policy == "" {
			return usageError("rate needs --target-rate, --min-rate or --policy")
		}
		if o.target != "" {
			if req.Target, err = engine.ParseBitRate(o.target); err != nil {
				return usageError("--target-rate: %v", err)
			}
		}
		if o.min != "" {
			if req.Min, err = engine.ParseBitRate(o.min); err != nil {
				return usageError("--min-rate: %v", err)
			}
		}
		if o.policy != "" {
			p, err := engine.ParsePolicy(o.policy)
			if err != nil {
				return usageError("--policy: %v", err)
			}
			req.Policy = string(p)
		}
	default:
		return usageError("unknown action %q (want list, pause, resume, cancel or rate)", req.Op)
	}
	path := controlPath(env, mp)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s is not served by a running chute mount of this user (no control socket at %s)", mp, path)
	}
	resp, err := callControl(path, req)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(env.Stdout)
		for _, t := range resp.Transfers {
			enc.Encode(t)
		}
		return nil
	}
	if len(resp.Transfers) == 0 {
		fmt.Fprintln(env.Stdout, "no transfers running")
		return nil
	}
	fmt.Fprintf(env.Stdout, "%-16s  %-8s  %-9s  %21s  %14s  %8s  %s\n", "ID", "DIR", "STATE", "DONE", "RATE", "ETA", "KEY")
	for _, t := range resp.Transfers {
		eta := "-"
		if t.ETASeconds > 0 {
			eta = (time.Duration(t.ETASeconds) * time.Second).String()
		}
		fmt.Fprintf(env.Stdout, "%-16s  %-8s  %-9s  %10s/%-10s  %14s  %8s  %s\n", t.ID, t.Direction, t.State,
			humanBytes(t.Done), humanBytes(t.Size), engine.FormatBitRate(t.Rate), eta, displayName(t.Key))
	}
	return nil
}
