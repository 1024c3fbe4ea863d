package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/chute/chute/cos"
)

type lsOptions struct {
	client    clientOptions
	recursive bool
	json      bool
}

func init() {
	o := &lsOptions{}
	register(&command{
		Name:    "ls",
		Usage:   "ls [flags] chute://[user@]host[:port]/bucket[/prefix/]",
		Summary: "list objects and folders: size, modification time, name",
		Flags: func(fs *pflag.FlagSet) {
			o.client.AddFlags(fs)
			fs.BoolVarP(&o.recursive, "recursive", "r", false, "list everything under the prefix, not just one level")
			fs.BoolVar(&o.json, "json", false, "one JSON object per line")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runLs(ctx, env, o, args) },
	})
}

func runLs(ctx context.Context, env *Env, o *lsOptions, args []string) error {
	if len(args) != 1 || !IsRemote(args[0]) {
		return usageError("ls takes one chute:// location")
	}
	loc, err := ParseLocation(args[0])
	if err != nil {
		return usageError("%v", err)
	}
	c, err := o.client.lazyClient(env, loc) // the first list connects
	if err != nil {
		return err
	}
	defer c.Close()
	prefix := loc.Key
	opt := cos.ListOptions{Prefix: prefix}
	if !o.recursive {
		opt.Delimiter = "/"
	}
	enc := json.NewEncoder(env.Stdout)
	found := prefix == "" // a bucket's root exists even when empty
	for {
		page, err := c.List(ctx, loc.Bucket, opt)
		if err != nil {
			return err
		}
		// A key without a trailing slash may name one object.
		if len(page.Objects) == 0 && len(page.CommonPrefixes) == 0 && prefix != "" && !strings.HasSuffix(prefix, "/") && opt.StartAfter == "" {
			if info, err := c.Stat(ctx, loc.Bucket, prefix); err == nil {
				page.Objects = []cos.ObjectInfo{info}
			} else {
				opt.Prefix = prefix + "/"
				prefix = opt.Prefix
				continue
			}
		}
		if len(page.Objects) > 0 || len(page.CommonPrefixes) > 0 {
			found = true
		}
		for _, p := range page.CommonPrefixes {
			if o.json {
				enc.Encode(map[string]any{"name": p, "folder": true})
			} else {
				fmt.Fprintf(env.Stdout, "%12s  %-19s  %s\n", "-", "", displayName(p))
			}
		}
		for _, obj := range page.Objects {
			if obj.Key == prefix && strings.HasSuffix(obj.Key, "/") {
				continue // the folder's own marker
			}
			mt := obj.ModTime()
			if o.json {
				enc.Encode(map[string]any{"name": obj.Key, "size": obj.Size, "mtime": mt.UTC().Format(time.RFC3339Nano), "folder": strings.HasSuffix(obj.Key, "/")})
			} else {
				fmt.Fprintf(env.Stdout, "%12d  %-19s  %s\n", obj.Size, mt.Local().Format("2006-01-02 15:04:05"), displayName(obj.Key))
			}
		}
		if page.NextStartAfter == "" {
			if !found {
				return fmt.Errorf("%s: no such object or folder", loc)
			}
			return nil
		}
		opt.StartAfter = page.NextStartAfter
	}
}

// displayName is a key as ls prints it: as it is, or quoted with Go's
// escapes when it holds control characters or is not UTF-8, so that a name
// in a shared bucket cannot forge lines or send escape sequences to the
// terminal.
func displayName(key string) string {
	if !utf8.ValidString(key) {
		return strconv.Quote(key)
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return strconv.Quote(key)
		}
	}
	return key
}
