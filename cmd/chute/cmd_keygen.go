package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/chute/chute/engine"
)

type keygenOptions struct {
	out     string
	comment string
}

func init() {
	o := &keygenOptions{}
	register(&command{
		Name:    "keygen",
		Usage:   "keygen [--out FILE]",
		Summary: "make an Ed25519 key pair for this client ($CHUTE_HOME/id_ed25519) and print its public key line",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVarP(&o.out, "out", "o", "", "private key file (default $CHUTE_HOME/id_ed25519)")
			fs.StringVarP(&o.comment, "comment", "C", "", "comment on the public key line (default user@host)")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runKeygen(ctx, env, o, args) },
	})
}

func runKeygen(ctx context.Context, env *Env, o *keygenOptions, args []string) error {
	if len(args) != 0 {
		return usageError("keygen takes no arguments")
	}
	path := o.out
	if path == "" {
		home, err := chuteHome(env)
		if err != nil {
			return err
		}
		path = filepath.Join(home, "id_ed25519")
	}
	comment := o.comment
	if comment == "" {
		host, _ := os.Hostname()
		user := env.Getenv("USER")
		if user == "" {
			user = "chute"
		}
		comment = user + "@" + host
	}
	line, err := engine.GenerateKey(path, comment)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "wrote %s and %s.pub; add this line to the server's authorized_keys:\n", path, path)
	fmt.Fprintln(env.Stdout, line)
	return nil
}
