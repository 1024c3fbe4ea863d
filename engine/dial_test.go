package engine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"golang.org/x/crypto/ssh"
)

// plainSSHServer runs an SSH server on loopback that takes any client key
// and hands each channel opened to handle. It returns its address.
func plainSSHServer(t *testing.T, handle func(ssh.NewChannel)) string {
	t.Helper()
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
	t.Cleanup(func() { l.Close() })
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
					handle(nch)
				}
			}()
		}
	}()
	return l.Addr().String()
}

// plainClient is a client of addr with a fresh key; it has not dialed.
func plainClient(t *testing.T, addr string) *Client {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id_ed25519")
	if _, err := GenerateKey(keyPath, "test"); err != nil {
		t.Fatal(err)
	}
	signer, err := LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(addr, ClientConfig{Signer: signer, KnownHosts: filepath.Join(dir, "known_hosts"), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialPlain dials addr with a fresh client key.
func dialPlain(t *testing.T, addr string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := plainClient(t, addr)
	_, err := c.conn(ctx)
	return err
}

// TestDialServerWithoutChute checks that a plain SSH server, which refuses
// channel types it does not know (as OpenSSH does), fails the dial at
// once with a protocol error that says so.
func TestDialServerWithoutChute(t *testing.T) {
	addr := plainSSHServer(t, func(nch ssh.NewChannel) {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "unknown channel type")
			return
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		go func() {
			for req := range creqs {
				req.Reply(false, nil)
			}
			ch.Close()
		}()
	})
	start := time.Now()
	err := dialPlain(t, addr)
	if err == nil {
		t.Fatal("dial succeeded against a server that does not speak chute")
	}
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "does not speak chute") {
		t.Fatalf("dial error %q; want ErrProtocol saying the server does not speak chute", err)
	}
	// Not a timing measurement: a refusal must not wait out the dial timeout.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the refusal took %v to surface", d)
	}
}

// TestHelloRidesInTheChannelOpen checks that the client's first request
// travels in the control channel's open message, so that the channel and
// the data session cost one round trip, not two (open, then hello): the
// first channel the client opens is a control channel whose extra data is
// exactly one hello frame of this protocol version.
func TestHelloRidesInTheChannelOpen(t *testing.T) {
	type opened struct {
		kind  string
		extra []byte
	}
	got := make(chan opened, 4)
	addr := plainSSHServer(t, func(nch ssh.NewChannel) {
		got <- opened{nch.ChannelType(), nch.ExtraData()}
		nch.Reject(ssh.Prohibited, "seen")
	})
	if err := dialPlain(t, addr); err == nil {
		t.Fatal("dial succeeded although the channel was refused")
	}
	first := <-got
	if first.kind != ChannelType {
		t.Fatalf("the client first opened a %q channel, want %q", first.kind, ChannelType)
	}
	if len(first.extra) < 4 || int(binary.BigEndian.Uint32(first.extra))+4 != len(first.extra) {
		t.Fatalf("the open message's extra data (%d bytes) is not one frame", len(first.extra))
	}
	fr, err := (&framer{r: bytes.NewReader(first.extra)}).read()
	if err != nil {
		t.Fatal(err)
	}
	var hello helloReq
	if err := json.Unmarshal(fr.Body, &hello); err != nil {
		t.Fatal(err)
	}
	if fr.Op != "hello" || fr.ID == 0 || hello.Version != ProtocolVersion {
		t.Fatalf("the open message carried op %q id %d version %d, want a hello request of version %d", fr.Op, fr.ID, hello.Version, ProtocolVersion)
	}
	select {
	case o := <-got:
		t.Fatalf("the client opened another channel (%q) after the refusal", o.kind)
	default:
	}
}

// TestServerTakesTheSubsystem checks that a node still answers a client
// that asks for the control channel the earlier way: a session channel,
// then the "chute" subsystem, then hello on it.
func TestServerTakesTheSubsystem(t *testing.T) {
	n := startNode(t, nil, "")
	sc, err := ssh.Dial("tcp", n.srv.Addr().String(), &ssh.ClientConfig{
		User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(n.config(t).Signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // the node was started above, on loopback
		Timeout:         20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem(SubsystemName); err != nil {
		t.Fatalf("the node refused the %q subsystem: %v", SubsystemName, err)
	}
	body, _ := json.Marshal(helloReq{Version: ProtocolVersion})
	fr := &framer{r: r, w: w}
	if err := fr.write(frame{ID: 7, Op: "hello", Body: body}); err != nil {
		t.Fatal(err)
	}
	ans, err := fr.read()
	if err != nil {
		t.Fatal(err)
	}
	var hr helloResp
	if ans.ID != 7 || ans.Err != nil || json.Unmarshal(ans.Body, &hr) != nil || hr.Session == 0 || hr.UDPPort == 0 {
		t.Fatalf("answer to hello: id %d err %v body %s; want id 7 with a session and a UDP port", ans.ID, ans.Err, ans.Body)
	}
}

// TestFirstRequestRidesWithTheHello checks that the request that makes a
// client connect goes in the control channel's open message behind the
// hello when it is small (its answer then comes in the same round trip),
// and that a large one waits for the channel.
func TestFirstRequestRidesWithTheHello(t *testing.T) {
	for _, tc := range []struct {
		name   string
		call   func(*Client) error
		frames []string
	}{
		{"stat", func(c *Client) error { _, err := c.Stat(context.Background(), "photos", "a/b.jpg"); return err }, []string{"hello", "stat"}},
		{"list", func(c *Client) error {
			_, err := c.List(context.Background(), "photos", cos.ListOptions{Prefix: "a/"})
			return err
		}, []string{"hello", "list"}},
		{"large put", func(c *Client) error {
			_, err := c.Put(context.Background(), "photos", "big", make([]byte, 2*maxRide), cos.Meta{})
			return err
		}, []string{"hello"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := make(chan []byte, 4)
			addr := plainSSHServer(t, func(nch ssh.NewChannel) {
				extra <- nch.ExtraData()
				nch.Reject(ssh.Prohibited, "seen")
			})
			c := plainClient(t, addr)
			if err := tc.call(c); err == nil {
				t.Fatal("the call succeeded although the channel was refused")
			}
			var ops []string
			r := &framer{r: bytes.NewReader(<-extra)}
			for {
				fr, err := r.read()
				if err != nil {
					break
				}
				ops = append(ops, fr.Op)
			}
			if !slices.Equal(ops, tc.frames) {
				t.Fatalf("the open message carried %q, want %q", ops, tc.frames)
			}
		})
	}
}

// TestDataReadyWaitsForTheFirstRequest checks that a client made by
// NewClient does not connect for DataReady (cp watches the data path from
// the start): the first request connects, so that it can ride with the
// hello.
func TestDataReadyWaitsForTheFirstRequest(t *testing.T) {
	opened := make(chan string, 4)
	addr := plainSSHServer(t, func(nch ssh.NewChannel) {
		opened <- nch.ChannelType()
		nch.Reject(ssh.Prohibited, "seen")
	})
	c := plainClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.DataReady(ctx); !errors.Is(err, ErrCancelled) {
		t.Fatalf("DataReady before any request returned %v, want ErrCancelled once its context ends", err)
	}
	select {
	case kind := <-opened:
		t.Fatalf("DataReady connected (it opened a %q channel) ahead of the first request", kind)
	default:
	}
}

// TestFirstRequestAnsweredByANode checks, against a real node, the answers
// to requests that open a connection: one riding with the hello (a stat of
// a missing object: not found), and one too large to ride, sent right
// after the open (a 32 KiB put), which a later stat then finds.
func TestFirstRequestAnsweredByANode(t *testing.T) {
	n := startNode(t, nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, first := range []string{"stat", "put"} {
		c, err := NewClient(n.srv.Addr().String(), n.config(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		switch first {
		case "stat":
			if _, err := c.Stat(ctx, "photos", "missing.jpg"); !errors.Is(err, cos.ErrNotFound) {
				t.Fatalf("a stat that opened the connection returned %v, want not found", err)
			}
		case "put":
			data := bytes.Repeat([]byte("x"), 2*maxRide)
			if _, err := c.Put(ctx, "photos", "big.bin", data, cos.Meta{}); err != nil {
				t.Fatalf("a put that opened the connection: %v", err)
			}
			o, err := c.Stat(ctx, "photos", "big.bin")
			if err != nil || o.Size != int64(len(data)) {
				t.Fatalf("stat after the first put: size %d, err %v; want %d bytes", o.Size, err, len(data))
			}
		}
	}
}
