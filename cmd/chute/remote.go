package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/engine"
)

// Location is a parsed chute://[user@]host[:port]/bucket[/key] URL.
type Location struct {
	User   string
	Host   string // host or IP, without brackets
	Port   int
	Bucket string
	Key    string // "" for the bucket's root; ending in "/" for a folder
}

// IsRemote reports whether s looks like a chute:// URL.
func IsRemote(s string) bool { return strings.HasPrefix(s, "chute://") }

// ParseLocation parses a chute:// URL.
func ParseLocation(s string) (Location, error) {
	if !IsRemote(s) {
		return Location{}, fmt.Errorf("%q is not a chute:// location", s)
	}
	rest := strings.TrimPrefix(s, "chute://")
	hostPart, path, _ := strings.Cut(rest, "/")
	var loc Location
	if u, h, ok := strings.Cut(hostPart, "@"); ok {
		loc.User, hostPart = u, h
	}
	loc.Port = engine.DefaultPort
	host := hostPart
	if h, p, err := net.SplitHostPort(hostPart); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return Location{}, fmt.Errorf("%q: bad port %q", s, p)
		}
		host, loc.Port = h, n
	}
	loc.Host = strings.Trim(host, "[]")
	if loc.Host == "" {
		return Location{}, fmt.Errorf("%q: no host (want chute://host/bucket/key)", s)
	}
	bucket, key, _ := strings.Cut(path, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%q: no bucket (want chute://host/bucket/key)", s)
	}
	var err error
	if loc.Bucket, err = url.PathUnescape(bucket); err != nil {
		return Location{}, fmt.Errorf("%q: %w", s, err)
	}
	if loc.Key, err = url.PathUnescape(key); err != nil {
		// Keys may hold a literal %: keep them as typed.
		loc.Key = key
	}
	return loc, nil
}

// Addr is the control address, host:port.
func (l Location) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// IsFolder reports whether the location names a folder (the bucket root,
// or a key ending in "/").
func (l Location) IsFolder() bool { return l.Key == "" || strings.HasSuffix(l.Key, "/") }

func (l Location) String() string {
	u := ""
	if l.User != "" {
		u = l.User + "@"
	}
	host := l.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := ""
	if l.Port != engine.DefaultPort {
		port = ":" + strconv.Itoa(l.Port)
	}
	return "chute://" + u + host + port + "/" + l.Bucket + "/" + l.Key
}

// clientOptions are the flags every command that talks to a server takes.
type clientOptions struct {
	identity   string
	knownHosts string
	cipher     string
	target     string
	min        string
	policy     string
	packetSize int
	connect    time.Duration
}

func (o *clientOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.identity, "identity", "i", "", "private key file (default $CHUTE_HOME/id_ed25519)")
	fs.StringVar(&o.knownHosts, "known-hosts", "", "known hosts file (default $CHUTE_HOME/known_hosts)")
	fs.StringVar(&o.cipher, "cipher", "aes-256-gcm", "data encryption: aes-256-gcm, aes-128-gcm or none")
	fs.StringVarP(&o.target, "target-rate", "l", "", "target rate in bits/s, k/m/g suffixes, also the rate to start at (default: as fast as the path allows, from 10 Mbit/s)")
	fs.StringVarP(&o.min, "min-rate", "m", "", "minimum rate in bits/s under congestion (default 0)")
	fs.StringVar(&o.policy, "policy", "fair", "rate policy: fixed, fair, high or low")
	fs.IntVar(&o.packetSize, "packet-size", 0, "UDP payload size of data packets (default 1400)")
	fs.DurationVar(&o.connect, "connect-timeout", 20*time.Second, "how long to wait for the server: for the SSH connection, and for an answer on its UDP port")
}

// chuteHome is $CHUTE_HOME, or ~/.config/chute.
func chuteHome(env *Env) (string, error) {
	if h := env.Getenv("CHUTE_HOME"); h != "" {
		return h, nil
	}
	if x := env.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "chute"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home folder: set CHUTE_HOME")
	}
	return filepath.Join(home, ".config", "chute"), nil
}

// rate parses the rate flags.
func (o *clientOptions) rate() (engine.Rate, error) {
	var r engine.Rate
	var err error
	if o.target != "" {
		if r.Target, err = engine.ParseBitRate(o.target); err != nil {
			return r, usageError("--target-rate: %v", err)
		}
	}
	if o.min != "" {
		if r.Min, err = engine.ParseBitRate(o.min); err != nil {
			return r, usageError("--min-rate: %v", err)
		}
	}
	if r.Policy, err = engine.ParsePolicy(o.policy); err != nil {
		return r, usageError("--policy: %v", err)
	}
	if r.Policy == engine.PolicyFixed && r.Target == 0 {
		return r, usageError("--policy fixed needs --target-rate (the rate to send at)")
	}
	if r.Target > 0 && r.Min > r.Target {
		return r, usageError("--min-rate is above --target-rate")
	}
	return r, nil
}

// config builds the engine's client configuration from the flags.
func (o *clientOptions) config(env *Env, loc Location) (engine.ClientConfig, error) {
	home, err := chuteHome(env)
	if err != nil {
		return engine.ClientConfig{}, err
	}
	id := o.identity
	if id == "" {
		id = filepath.Join(home, "id_ed25519")
	}
	kh := o.knownHosts
	if kh == "" {
		kh = filepath.Join(home, "known_hosts")
	}
	signer, err := engine.LoadKey(id)
	if err != nil {
		return engine.ClientConfig{}, err
	}
	cipher, err := engine.ParseCipher(o.cipher)
	if err != nil {
		return engine.ClientConfig{}, usageError("--cipher: %v", err)
	}
	r, err := o.rate()
	if err != nil {
		return engine.ClientConfig{}, err
	}
	return engine.ClientConfig{
		User: loc.User, Signer: signer, KnownHosts: kh, Cipher: cipher, Rate: r,
		PacketSize: o.packetSize, PathMemory: filepath.Join(home, "paths.json"), Logger: env.Logger,
		DialTimeout: o.connect,
	}, nil
}

// dial connects to the location's server.
func (o *clientOptions) dial(ctx context.Context, env *Env, loc Location) (*engine.Client, error) {
	cfg, err := o.config(env, loc)
	if err != nil {
		return nil, err
	}
	return engine.Dial(ctx, loc.Addr(), cfg)
}

// lazyClient is a client of the location's server that connects with its
// first request: a stat or a list then rides in the control channel's open
// message, one round trip sooner. Connection errors come from that
// request.
func (o *clientOptions) lazyClient(env *Env, loc Location) (*engine.Client, error) {
	cfg, err := o.config(env, loc)
	if err != nil {
		return nil, err
	}
	return engine.NewClient(loc.Addr(), cfg)
}
