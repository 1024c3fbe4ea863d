package engine

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/chute/chute/cos"
)

// GenerateKey writes a new Ed25519 key pair in OpenSSH format: the private
// key at path (mode 0600) and the public key at path+".pub". It refuses to
// overwrite an existing key. It returns the public key line.
func GenerateKey(path, comment string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("%s already exists; remove it first to make a new key", path)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	if comment != "" {
		line += " " + comment
	}
	if err := writeFileAtomic(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", err
	}
	return line, nil
}

// LoadKey reads an OpenSSH private key (unencrypted).
func LoadKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no key at %s: run `chute keygen` to make one, or pass --identity", path)
		}
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return nil, fmt.Errorf("key %s is protected by a passphrase, which chute cannot prompt for: use a key without one", path)
		}
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	return s, nil
}

// loadOrCreateHostKey returns the server's host key, making one on first
// start.
func loadOrCreateHostKey(path string) (ssh.Signer, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := GenerateKey(path, "chute-server"); err != nil {
			return nil, fmt.Errorf("making host key %s: %w", path, err)
		}
	}
	return LoadKey(path)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Access is what one authorized key may do. The zero value allows
// everything.
type Access struct {
	// Buckets, when not empty, are the only buckets the key may use
	// (option buckets="a,b").
	Buckets []string
	// Prefix, when set, is the only key prefix the key may use, in every
	// bucket it may use (option prefix="run42/").
	Prefix string
	// ReadOnly keys may list, stat and download, nothing else (option
	// read-only).
	ReadOnly bool
}

// Check reports whether the access allows touching key in bucket, and
// writing it if write is set. An empty key stands for the bucket itself
// (listing checks its prefix with CheckList).
func (a Access) Check(op, bucket, key string, write bool) error {
	if err := a.checkBucket(op, bucket); err != nil {
		return err
	}
	if a.Prefix != "" && !strings.HasPrefix(key, a.Prefix) {
		return a.deny(op, bucket, key, "this key may only use keys under "+a.Prefix)
	}
	if write && a.ReadOnly {
		return a.deny(op, bucket, key, "this key is read-only")
	}
	return nil
}

// CheckList reports whether listing bucket under prefix is allowed: inside
// the access's prefix, or above it (the listing is then narrowed to it).
func (a Access) CheckList(bucket, prefix string) error {
	if err := a.checkBucket("list", bucket); err != nil {
		return err
	}
	if a.Prefix != "" && !strings.HasPrefix(prefix, a.Prefix) && !strings.HasPrefix(a.Prefix, prefix) {
		return a.deny("list", bucket, prefix, "this key may only use keys under "+a.Prefix)
	}
	return nil
}

// BucketAllowed reports whether the access may use the bucket at all.
func (a Access) BucketAllowed(bucket string) bool { return a.checkBucket("", bucket) == nil }

func (a Access) checkBucket(op, bucket string) error {
	if len(a.Buckets) == 0 {
		return nil
	}
	for _, b := range a.Buckets {
		if b == bucket {
			return nil
		}
	}
	return a.deny(op, bucket, "", "this key may only use bucket(s) "+strings.Join(a.Buckets, ", "))
}

func (a Access) deny(op, bucket, key, why string) error {
	return &cos.Error{Op: op, Bucket: bucket, Key: key, Err: fmt.Errorf("%w: %s", cos.ErrPermission, why)}
}

// authorizedKey is one line of an authorized_keys file.
type authorizedKey struct {
	key    ssh.PublicKey
	access Access
	line   int
}

// authorizedKeys is the server's authorized_keys file, read again whenever
// it changes.
type authorizedKeys struct {
	path string

	mu    sync.Mutex
	stamp string // size and mtime of the file as last read
	keys  map[string]authorizedKey
}

// parseAuthorizedKeys reads OpenSSH authorized_keys lines with chute's
// options: buckets="a,b", prefix="p/", read-only.
func parseAuthorizedKeys(data []byte) (map[string]authorizedKey, error) {
	keys := map[string]authorizedKey{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pk, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		var acc Access
		for _, o := range opts {
			name, val, hasVal := strings.Cut(o, "=")
			val = strings.Trim(val, `"`)
			switch strings.ToLower(name) {
			case "buckets", "bucket":
				if !hasVal || val == "" {
					return nil, fmt.Errorf("line %d: option %s needs a value, e.g. buckets=\"photos\"", n, name)
				}
				for _, b := range strings.Split(val, ",") {
					if b = strings.TrimSpace(b); b != "" {
						acc.Buckets = append(acc.Buckets, b)
					}
				}
			case "prefix":
				if !hasVal || val == "" {
					return nil, fmt.Errorf("line %d: option prefix needs a value, e.g. prefix=\"run42/\"", n)
				}
				if err := cos.ValidKey(strings.TrimSuffix(val, "/") + "/x"); err != nil {
					return nil, fmt.Errorf("line %d: prefix %q: %w", n, val, err)
				}
				acc.Prefix = val
			case "read-only", "readonly":
				acc.ReadOnly = true
			default:
				// OpenSSH options (no-pty, from=..., ...) mean nothing here;
				// they are accepted so one file can serve both.
			}
		}
		keys[string(pk.Marshal())] = authorizedKey{key: pk, access: acc, line: n}
	}
	return keys, sc.Err()
}

// lookup returns the access of a key, re-reading the file if it changed.
func (a *authorizedKeys) lookup(pk ssh.PublicKey) (authorizedKey, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fi, err := os.Stat(a.path)
	if err != nil {
		return authorizedKey{}, false, fmt.Errorf("authorized keys %s: %w", a.path, err)
	}
	stamp := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	if stamp != a.stamp || a.keys == nil {
		data, err := os.ReadFile(a.path)
		if err != nil {
			return authorizedKey{}, false, err
		}
		keys, err := parseAuthorizedKeys(data)
		if err != nil {
			return authorizedKey{}, false, fmt.Errorf("authorized keys %s: %w", a.path, err)
		}
		a.keys, a.stamp = keys, stamp
	}
	k, ok := a.keys[string(pk.Marshal())]
	return k, ok, nil
}

// hostKeyChangedError carries the refusal of a changed host key through
// the SSH handshake, so that it reaches the user without the handshake's
// own wording around it.
type hostKeyChangedError struct{ err error }

func (e *hostKeyChangedError) Error() string { return e.err.Error() }
func (e *hostKeyChangedError) Unwrap() error { return e.err }

// knownHostsError is a known_hosts file chute cannot use.
type knownHostsError struct {
	path string
	err  error
}

func (e *knownHostsError) Error() string {
	return fmt.Sprintf("the known hosts file %s is unreadable (%v): fix or remove the bad line, or remove the file to trust servers again on first use", e.path, e.err)
}

func (e *knownHostsError) Unwrap() error { return e.err }

// hostKeyCallback trusts a server's key on first use, recording it in the
// known_hosts file, and refuses a key that differs from the recorded one.
func hostKeyCallback(path string) ssh.HostKeyCallback {
	var mu sync.Mutex
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		mu.Lock()
		defer mu.Unlock()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
		check, err := knownhosts.New(path)
		if err != nil {
			return &knownHostsError{path: path, err: err}
		}
		err = check(hostname, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) == 0:
			// Unknown host: trust on first use.
			line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key)
			af, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer af.Close()
			if _, err := af.WriteString(line + "\n"); err != nil {
				return err
			}
			return af.Sync()
		case errors.As(err, &ke):
			w := ke.Want[0]
			return &hostKeyChangedError{fmt.Errorf("%w: the server at %s presented host key %s, but %s line %d records %s for it. "+
				"Someone may be intercepting the connection, or the server was reinstalled or given a new key. "+
				"If you know the key changed legitimately, delete line %d of %s and connect again",
				ErrHostKeyChanged, knownhosts.Normalize(hostname), ssh.FingerprintSHA256(key),
				w.Filename, w.Line, ssh.FingerprintSHA256(w.Key), w.Line, w.Filename)}
		default:
			return err
		}
	}
}
