package engine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestDialRefusedSubsystem checks that an SSH server without the chute
// subsystem fails the dial at once with a protocol error that says so,
// although the client no longer waits for the subsystem's answer before
// its first request.
func TestDialRefusedSubsystem(t *testing.T) {
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	conf := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	conf.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, conf)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					// A plain SSH server: no such subsystem, and the
					// channel stays open (as ours does on a refusal).
					go func() {
						for req := range creqs {
							req.Reply(false, nil)
						}
						ch.Close()
					}()
				}
			}()
		}
	}()

	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id_ed25519")
	if _, err := GenerateKey(keyPath, "test"); err != nil {
		t.Fatal(err)
	}
	signer, err := LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, l.Addr().String(), ClientConfig{Signer: signer, KnownHosts: filepath.Join(dir, "known_hosts"), Logger: quietLog()})
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded against a server without the chute subsystem")
	}
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "does not speak chute") {
		t.Fatalf("dial error %q; want ErrProtocol saying the server does not speak chute", err)
	}
	// Not a timing measurement: a refusal must not wait out the dial timeout.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the refusal took %v to surface", d)
	}
}
