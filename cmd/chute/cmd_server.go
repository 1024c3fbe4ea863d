package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

type serverOptions struct {
	data           string
	listen         string
	udpPort        int
	authorizedKeys string
	buckets        []string
	store          string
	s3Endpoint     string
	s3Region       string
	s3Addressing   string
	s3PartSize     string
	s3Concurrency  int
	staleAge       time.Duration
}

func init() {
	o := &serverOptions{}
	register(&command{
		Name:    "server",
		Usage:   "server --data DIR [--bucket NAME]... [flags]",
		Summary: "run a transfer node: SSH control on TCP, data on UDP, objects in a folder or an S3 store",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.data, "data", "", "data folder: host key, staged uploads, and the folder store's objects (created when missing)")
			fs.StringVar(&o.listen, "listen", ":33001", "SSH control address")
			fs.IntVar(&o.udpPort, "udp-port", 0, "UDP data port (default: the control port's number)")
			fs.StringVar(&o.authorizedKeys, "authorized-keys", "", "OpenSSH authorized_keys file of client keys (default DATA/authorized_keys); options buckets=\"a,b\", prefix=\"p/\", read-only restrict a key")
			fs.StringArrayVar(&o.buckets, "bucket", nil, "bucket to serve, created if missing (repeatable)")
			fs.StringVar(&o.store, "store", "folder", "object store: folder (DATA/objects) or s3")
			fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL, e.g. https://s3.us-south.cloud-object-storage.appdomain.cloud")
			fs.StringVar(&o.s3Region, "s3-region", "", "S3 region (default us-east-1)")
			fs.StringVar(&o.s3Addressing, "s3-addressing", "auto", "S3 bucket addressing: auto, path or virtual")
			fs.StringVar(&o.s3PartSize, "s3-part-size", "", "multipart part size, e.g. 64M (default 16M; raised to stay within 10,000 parts)")
			fs.IntVar(&o.s3Concurrency, "s3-concurrency", 4, "parts of one upload sent to the store at once")
			fs.DurationVar(&o.staleAge, "stale-upload-age", 7*24*time.Hour, "discard unfinished uploads (staged and multipart) older than this")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runServer(ctx, env, o, args) },
	})
}

func runServer(ctx context.Context, env *Env, o *serverOptions, args []string) error {
	if len(args) != 0 {
		return usageError("server takes no arguments (did you mean --bucket %s?)", args[0])
	}
	if o.data == "" {
		return usageError("--data is required: the folder for the host key, staged uploads and objects")
	}
	var store cos.Store
	switch o.store {
	case "folder":
		if o.s3Endpoint != "" {
			return usageError("--s3-endpoint given but --store is folder; add --store s3")
		}
	case "s3":
		if o.s3Endpoint == "" {
			return usageError("--store s3 needs --s3-endpoint")
		}
		var partSize int64
		if o.s3PartSize != "" {
			n, err := parseSize(o.s3PartSize)
			if err != nil {
				return usageError("--s3-part-size: %v", err)
			}
			partSize = n
		}
		cfg := cos.S3Config{
			Endpoint: o.s3Endpoint, Region: o.s3Region, Addressing: o.s3Addressing,
			PartSize: partSize, Concurrency: o.s3Concurrency, Logger: env.Logger,
		}
		if len(o.buckets) > 0 {
			cfg.Bucket = o.buckets[0]
		}
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s3, err := cos.NewS3(ictx, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("S3 store at %s: %w", o.s3Endpoint, err)
		}
		store = s3
	default:
		return usageError("--store must be folder or s3, not %q", o.store)
	}
	srv, err := engine.NewServer(engine.ServerConfig{
		DataDir: o.data, Store: store, Listen: o.listen, UDPPort: o.udpPort,
		AuthorizedKeys: o.authorizedKeys, Buckets: o.buckets, StaleUploadAge: o.staleAge,
		PartConcurrency: o.s3Concurrency, Logger: env.Logger,
	})
	if err != nil {
		return err
	}
	where := "folder store in " + filepath.Join(o.data, "objects")
	if o.store == "s3" {
		where = "S3 store at " + o.s3Endpoint
	}
	fmt.Fprintf(env.Stdout, "chute server: control (SSH) on tcp %s, data on udp %s, %s, buckets: %s\n",
		srv.Addr(), srv.UDPAddr(), where, strings.Join(o.buckets, ", "))
	err = srv.Serve(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintln(env.Stdout, "chute server: stopped")
	return nil
}

// parseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024): "64M", "1.5G", "4096".
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	var v float64
	if _, err := fmt.Sscanf(t, "%g", &v); err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 64M or 20G)", s)
	}
	return int64(v * float64(mult)), nil
}
