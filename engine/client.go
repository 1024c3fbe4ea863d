package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/udpio"
	"github.com/chute/chute/engine/wire"
)

// ClientConfig configures a Client. Zero fields take the documented
// defaults.
type ClientConfig struct {
	// User is the SSH user name; "" means the local user's name.
	User string
	// Signer is the client's key (see LoadKey). Required.
	Signer ssh.Signer
	// KnownHosts is the known_hosts file: an unknown server's key is
	// recorded there on first use; a changed one is refused. Required.
	KnownHosts string
	// Cipher protects the data channel; "" means aes-256-gcm.
	Cipher Cipher
	// Rate is the session's default rate: every transfer on the client
	// shares it. Target 0 means 10 Gbit/s (the path decides); a target
	// given is also where the rate starts, as in Aspera (capped by the
	// path memory, when there is one).
	Rate Rate
	// PacketSize is the UDP payload size of data packets; 0 means 1400.
	PacketSize int
	// DialTimeout bounds connecting and authenticating; 0 means 20 s.
	DialTimeout time.Duration
	// PathMemory, if set, is a file where the client keeps the rate its
	// transfers to each server reached, and from which a new session to a
	// server it moved data to within the hour starts at half that rate
	// instead of at 10 Mbit/s (see pathrate.go).
	PathMemory string
	// UDP tunes the data socket (tests and benchmarks).
	UDP udpio.Options
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// Client is a connection to a chute server: one SSH control channel and
// one UDP data session, carrying any number of concurrent operations and
// transfers. If the connection drops, the next call dials again; transfers
// that were running fail with ErrUnreachable and resume when restarted.
//
// A Client is safe for concurrent use.
type Client struct {
	addr string
	cfg  ClientConfig
	log  *slog.Logger

	mu     sync.Mutex
	cc     *clientConn
	closed bool

	stream    atomic.Uint32
	xmu       sync.Mutex
	transfers map[string]*transfer

	up     chan struct{} // closed once a connection was first made
	upOnce sync.Once
}

// Dial connects to a server at addr (host or host:port; the port defaults
// to 33001), authenticates, and opens the data session.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	c, err := NewClient(addr, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// NewClient is Dial without connecting: the first request connects, and
// if it needs no data session (a stat, a list, a small put) it rides in
// the control channel's open message, one round trip sooner. Errors that
// Dial would return come from that request instead.
func NewClient(addr string, cfg ClientConfig) (*Client, error) {
	if cfg.Signer == nil {
		return nil, errors.New("dial: no client key")
	}
	if cfg.KnownHosts == "" {
		return nil, errors.New("dial: no known_hosts file")
	}
	if _, err := ParseCipher(string(cfg.Cipher)); err != nil {
		return nil, err
	}
	if cfg.User == "" {
		if u, err := user.Current(); err == nil {
			cfg.User = u.Username
		} else {
			cfg.User = "chute"
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 20 * time.Second
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(DefaultPort))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{addr: addr, cfg: cfg, log: log.With("server", addr), transfers: map[string]*transfer{}, up: make(chan struct{})}, nil
}

// Addr is the server's control address.
func (c *Client) Addr() string { return c.addr }

// Close ends the connection; running transfers fail with ErrCancelled.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	cc := c.cc
	c.cc = nil
	c.mu.Unlock()
	if cc != nil {
		cc.close(ErrCancelled)
	}
	return nil
}

// clientConn is one live connection.
type clientConn struct {
	c    *Client
	ssh  *ssh.Client
	tcp  net.Conn // under ssh
	fr   *framer
	ep   *endpoint
	sess *session
	// early: the server holds data that comes before its upload request.
	early bool

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan frame
	events  map[uint32]func(op string, body json.RawMessage)

	dead    chan struct{}
	deadErr error
	dataOK  chan struct{} // closed when the node first answers a data hello
	once    sync.Once
}

// conn returns the live connection, dialling when there is none.
func (c *Client) conn(ctx context.Context) (*clientConn, error) {
	return c.connWith(ctx, nil)
}

// firstRequest is a request that opens the connection. It rides in the
// control channel's open message, behind the hello, when its frame is
// small enough (one round trip less for a command whose first request is
// a stat, a list or a small put), and goes right after the open otherwise.
type firstRequest struct {
	op  string
	req any
	id  uint64
	ch  chan frame // set once the request was sent: await its answer on it
}

// maxRide is the largest frame that rides in the open message (SSH
// implementations bound a packet at 32 KiB or more).
const maxRide = 16 << 10

// connWith returns the live connection, dialing if there is none. When
// it dials, it sends first, if given, with the open message (first.ch is
// then set); otherwise the caller sends it. Only requests that need no
// data session may go so: the node handles them beside the hello, not
// after it.
func (c *Client) connWith(ctx context.Context, first *firstRequest) (*clientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%w: client closed", ErrCancelled)
	}
	if c.cc != nil {
		select {
		case <-c.cc.dead:
			c.cc = nil
		default:
			return c.cc, nil
		}
	}
	cc, err := c.dial(ctx, first)
	if err != nil {
		return nil, err
	}
	c.cc = cc
	c.upOnce.Do(func() { close(c.up) })
	return cc, nil
}

func (c *Client) dial(ctx context.Context, first *firstRequest) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nc, err := dialControl(ctx, c.addr, controlBackupDial)
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to %s: %v", ErrUnreachable, c.addr, err)
	}
	if err := tuneControl(nc); err != nil {
		c.log.Debug("control connection keeps the kernel's TCP timers", "err", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, c.addr, &ssh.ClientConfig{
		User:            c.cfg.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(c.cfg.Signer)},
		HostKeyCallback: hostKeyCallback(c.cfg.KnownHosts),
		Timeout:         c.cfg.DialTimeout,
		ClientVersion:   "SSH-2.0-chute_" + serverVersion,
	})
	if err != nil {
		nc.Close()
		var khe *knownHostsError
		var hkc *hostKeyChangedError
		switch {
		case errors.As(err, &hkc):
			return nil, hkc
		case errors.As(err, &khe):
			return nil, khe
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%w: the server at %s refused key %s: add its public key line to the server's authorized_keys",
				ErrAuth, c.addr, ssh.FingerprintSHA256(c.cfg.Signer.PublicKey()))
		}
		return nil, fmt.Errorf("%w: ssh to %s: %v", ErrUnreachable, c.addr, err)
	}
	nc.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	cc := &clientConn{c: c, ssh: client, tcp: nc, pending: map[uint64]chan frame{}, events: map[uint32]func(string, json.RawMessage){}, dead: make(chan struct{}), dataOK: make(chan struct{})}
	fail := func(err error) (*clientConn, error) {
		cc.close(err)
		return nil, err
	}
	go func() {
		err := client.Wait()
		cc.close(fmt.Errorf("%w: connection to %s lost: %v", ErrUnreachable, c.addr, err))
	}()

	// Open the control channel with the hello in the open message (see
	// ChannelType): the answer follows the channel's confirmation, in the
	// same round trip.
	rate := c.cfg.Rate
	start := pathStartRate(c.cfg.PathMemory, c.addr, rate.Target, time.Now())
	if start > 0 {
		c.log.Debug("starting above the default rate", "start_bps", start, "target_bps", rate.Target)
	}
	id, answer, hello, err := cc.request("hello", helloReq{
		Version: ProtocolVersion, Cipher: string(c.cfg.Cipher), PacketSize: c.cfg.PacketSize,
		Target: rate.Target, Min: rate.Min, Policy: string(rate.Policy), Start: start,
	})
	if err != nil {
		return fail(err)
	}
	var later []byte // the first request, when too large to ride
	if first != nil {
		fid, fch, b, err := cc.request(first.op, first.req)
		if err != nil {
			return fail(err)
		}
		first.id, first.ch = fid, fch
		if len(b) <= maxRide {
			hello = append(hello, b...)
		} else {
			later = b
		}
	}
	ch, creqs, err := client.OpenChannel(ChannelType, hello)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return fail(fmt.Errorf("%w: the server at %s does not speak chute: %v", ErrProtocol, c.addr, err))
		}
		return fail(fmt.Errorf("%w: opening control channel: %v", ErrUnreachable, err))
	}
	go ssh.DiscardRequests(creqs)
	cc.fr = &framer{r: ch, w: ch}
	go cc.readLoop()
	if later != nil {
		if err := cc.fr.writeEncoded(later); err != nil {
			return fail(fmt.Errorf("%w: control channel: %v", ErrUnreachable, err))
		}
	}

	// Agree on the data session.
	var hr helloResp
	if err := cc.await(ctx, "hello", id, answer, &hr); err != nil {
		return fail(err)
	}
	cc.early = hr.EarlyData && !testNoEarlyData
	remote := client.RemoteAddr().(*net.TCPAddr)
	rip, _ := netip.AddrFromSlice(remote.IP)
	peer := netip.AddrPortFrom(rip.Unmap(), uint16(hr.UDPPort))
	network := "udp4"
	if peer.Addr().Is6() {
		network = "udp6"
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return fail(fmt.Errorf("opening a UDP socket: %w", err))
	}
	cc.ep, err = newEndpoint(pc, c.cfg.UDP, c.log)
	if err != nil {
		pc.Close()
		return fail(err)
	}
	cipher, _ := ParseCipher(string(c.cfg.Cipher))
	lim := congestion.Limits{Target: float64(rate.Target) / 8, Min: float64(rate.Min) / 8, Policy: string(rate.Policy), Start: float64(start) / 8}
	var answeredOnce sync.Once
	cc.sess, err = newSession(cc.ep, sessionParams{
		id: hr.Session, cipher: string(cipher), sendKey: hr.C2S, recvKey: hr.S2C,
		packetSize: c.cfg.PacketSize, limits: lim, peer: peer,
		onHello: func(_ *session, h wire.Header, hello wire.Hello, from netip.AddrPort, now time.Time) {
			if h.Type == wire.TypeHelloAck && !testDropHelloAcks.Load() {
				answeredOnce.Do(func() { close(cc.dataOK) })
			}
		},
	}, c.log)
	if err != nil {
		return fail(err)
	}
	// The data session is ready to use once the node has its first hello:
	// a request may go at once, and an upload's data right behind it (the
	// node learns this address from the hello or from the data, whichever
	// comes first). Waiting for the hello's answer would add a round trip
	// to every command; it is awaited in the background instead, and a
	// connection whose hellos go unanswered for the dial timeout is ended
	// with what to check.
	cc.sess.sendHello(wire.TypeHello, wire.Hello{Time: cc.sess.micros(time.Now())})
	go cc.confirmData(peer, c.cfg.DialTimeout)
	return cc, nil
}

// confirmData repeats the data session's hello until the node answers,
// then keeps the path alive; with no answer within timeout it ends the
// connection.
func (cc *clientConn) confirmData(peer netip.AddrPort, timeout time.Duration) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()
	for {
		select {
		case <-cc.dataOK:
			cc.c.log.Info("connected", "udp", peer.String(), "cipher", cc.sess.cipher)
			cc.keepalive()
			return
		case <-tick.C:
			cc.sess.sendHello(wire.TypeHello, wire.Hello{Time: cc.sess.micros(time.Now())})
		case <-expire.C:
			cc.close(fmt.Errorf("%w: %w: nothing from UDP port %d of %s within %v: is that UDP port open in every firewall between here and the server?",
				ErrUnreachable, ErrNoDataPath, peer.Port(), peer.Addr(), timeout))
			return
		case <-cc.dead:
			return
		}
	}
}

// DataReady waits until the server has answered on the data path (UDP),
// which transfers do not wait for, and returns the connection's error if
// it ends first, as it does when no answer comes within the dial timeout.
// A long-lived user (a mount) calls it to fail at start rather than at its
// first transfer.
func (c *Client) DataReady(ctx context.Context) error {
	// A client made by NewClient connects with its first request; this
	// waits for that rather than connecting ahead of it.
	select {
	case <-c.up:
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrCancelled, ctx.Err())
	}
	cc, err := c.conn(ctx)
	if err != nil {
		return err
	}
	select {
	case <-cc.dataOK:
		return nil
	case <-cc.dead:
		return cc.deadErr
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrCancelled, ctx.Err())
	}
}

// keepalive refreshes NAT bindings on the data path while the connection
// lives.
func (cc *clientConn) keepalive() {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-cc.dead:
			return
		case <-t.C:
			cc.sess.sendHello(wire.TypeHello, wire.Hello{Time: cc.sess.micros(time.Now())})
		}
	}
}

func (cc *clientConn) close(err error) {
	cc.once.Do(func() {
		cc.deadErr = err
		close(cc.dead)
		if cc.ssh != nil {
			cc.ssh.Close()
		}
		if cc.sess != nil {
			cc.sess.close(err)
		}
		if cc.ep != nil {
			cc.ep.close()
		}
		cc.mu.Lock()
		for id, ch := range cc.pending {
			close(ch)
			delete(cc.pending, id)
		}
		cc.mu.Unlock()
	})
}

func (cc *clientConn) readLoop() {
	for {
		fr, err := cc.fr.read()
		if err != nil {
			cc.close(fmt.Errorf("%w: control channel: %v", ErrUnreachable, err))
			return
		}
		if fr.ID != 0 {
			cc.mu.Lock()
			ch := cc.pending[fr.ID]
			delete(cc.pending, fr.ID)
			cc.mu.Unlock()
			if ch != nil {
				ch <- fr
			}
			continue
		}
		var s streamReq
		if json.Unmarshal(fr.Body, &s) != nil {
			continue
		}
		cc.mu.Lock()
		h := cc.events[s.Stream]
		cc.mu.Unlock()
		if h != nil {
			h(fr.Op, fr.Body)
		}
	}
}

// call sends a request and waits for its answer, decoded into resp (which
// may be nil).
func (cc *clientConn) call(ctx context.Context, op string, req, resp any) error {
	id, ch, b, err := cc.request(op, req)
	if err != nil {
		return err
	}
	if err := cc.fr.writeEncoded(b); err != nil {
		cc.close(fmt.Errorf("%w: control channel: %v", ErrUnreachable, err))
		return cc.deadErr
	}
	return cc.await(ctx, op, id, ch, resp)
}

// request makes a request's frame, with a new id whose answer is awaited
// on ch.
func (cc *clientConn) request(op string, req any) (id uint64, ch chan frame, b []byte, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, nil, nil, err
	}
	ch = make(chan frame, 1)
	cc.mu.Lock()
	cc.nextID++
	id = cc.nextID
	cc.pending[id] = ch
	cc.mu.Unlock()
	b, err = encodeFrame(frame{ID: id, Op: op, Body: body})
	if err != nil {
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
		return 0, nil, nil, err
	}
	return id, ch, b, nil
}

// await waits for the answer to request id on ch, decoded into resp.
func (cc *clientConn) await(ctx context.Context, op string, id uint64, ch chan frame, resp any) error {
	select {
	case fr, ok := <-ch:
		if !ok {
			return cc.deadErr
		}
		if fr.Err != nil {
			return &RemoteError{Code: fr.Err.Code, Msg: fr.Err.Msg}
		}
		if resp != nil && len(fr.Body) > 0 {
			if err := json.Unmarshal(fr.Body, resp); err != nil {
				return fmt.Errorf("%w: bad %s answer: %v", ErrProtocol, op, err)
			}
		}
		return nil
	case <-ctx.Done():
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
		return ctx.Err()
	case <-cc.dead:
		return cc.deadErr
	}
}

func (cc *clientConn) onEvents(stream uint32, h func(op string, body json.RawMessage)) func() {
	cc.mu.Lock()
	cc.events[stream] = h
	cc.mu.Unlock()
	return func() {
		cc.mu.Lock()
		delete(cc.events, stream)
		cc.mu.Unlock()
	}
}

// call runs one request on the live connection, dialling if needed.
func (c *Client) call(ctx context.Context, op string, req, resp any) error {
	// Requests that come this way need no data session (transfers ask
	// through conn), so the first may ride with the hello.
	first := &firstRequest{op: op, req: req}
	cc, err := c.connWith(ctx, first)
	if err != nil {
		return err
	}
	if first.ch != nil { // sent when it opened the connection
		return cc.await(ctx, op, first.id, first.ch, resp)
	}
	return cc.call(ctx, op, req, resp)
}

// ---- object operations -----------------------------------------------

// Stat returns an object's info and metadata.
func (c *Client) Stat(ctx context.Context, bucket, key string) (cos.ObjectInfo, error) {
	var o objectJSON
	if err := c.call(ctx, "stat", objReq{Bucket: bucket, Key: key}, &o); err != nil {
		return cos.ObjectInfo{}, err
	}
	return o.info(), nil
}

// List returns one page of a bucket's keys. With opt.WithMeta the server
// fills in every object's metadata and the folders' markers (see
// cos.ListOptions), one round trip for the page instead of one per entry.
func (c *Client) List(ctx context.Context, bucket string, opt cos.ListOptions) (cos.ListPage, error) {
	var r listResp
	err := c.call(ctx, "list", listReq{Bucket: bucket, Prefix: opt.Prefix, Delimiter: opt.Delimiter, StartAfter: opt.StartAfter, MaxKeys: opt.MaxKeys, Meta: opt.WithMeta}, &r)
	if err != nil {
		return cos.ListPage{}, err
	}
	page := cos.ListPage{CommonPrefixes: r.CommonPrefixes, NextStartAfter: r.NextStartAfter}
	for _, o := range r.Objects {
		page.Objects = append(page.Objects, o.info())
	}
	if opt.WithMeta {
		page.Markers = []cos.ObjectInfo{} // filled: an absent marker means none
	}
	for _, m := range r.Markers {
		page.Markers = append(page.Markers, m.info())
	}
	return page, nil
}

// Put stores a small object (at most MaxInline bytes) over the control
// channel: folder markers, tiny files.
func (c *Client) Put(ctx context.Context, bucket, key string, data []byte, meta cos.Meta) (cos.ObjectInfo, error) {
	if len(data) > MaxInline {
		return cos.ObjectInfo{}, fmt.Errorf("put %s: %d bytes is more than the %d an inline put carries; use Upload", key, len(data), MaxInline)
	}
	var o objectJSON
	if err := c.call(ctx, "put", putReq{Bucket: bucket, Key: key, Data: data, Meta: toMetaJSON(meta)}, &o); err != nil {
		return cos.ObjectInfo{}, err
	}
	return o.info(), nil
}

// Delete removes an object; a missing one is not an error.
func (c *Client) Delete(ctx context.Context, bucket, key string) error {
	return c.call(ctx, "delete", objReq{Bucket: bucket, Key: key}, nil)
}

// Copy copies src to dst inside a bucket, on the server. With meta nil the
// source's metadata is kept.
func (c *Client) Copy(ctx context.Context, bucket, src, dst string, meta *cos.Meta) (cos.ObjectInfo, error) {
	req := copyReq{Bucket: bucket, Src: src, Dst: dst}
	if meta != nil {
		m := toMetaJSON(*meta)
		req.Meta = &m
	}
	var o objectJSON
	if err := c.call(ctx, "copy", req, &o); err != nil {
		return cos.ObjectInfo{}, err
	}
	return o.info(), nil
}

// Buckets lists the buckets the client's key may use (those the server
// was started with, and those the key is limited to).
func (c *Client) Buckets(ctx context.Context) ([]string, error) {
	var r bucketsResp
	err := c.call(ctx, "buckets", struct{}{}, &r)
	return r.Buckets, err
}

// Sums returns the SHA-256 of ranges of a stored object.
func (c *Client) Sums(ctx context.Context, bucket, key string, rs []Range) ([][]byte, error) {
	var r sumsResp
	if err := c.call(ctx, "sums", sumsReq{Bucket: bucket, Key: key, Ranges: rs}, &r); err != nil {
		return nil, err
	}
	if len(r.Sums) != len(rs) {
		return nil, fmt.Errorf("%w: %d sums for %d ranges", ErrProtocol, len(r.Sums), len(rs))
	}
	out := make([][]byte, len(rs))
	for i, s := range r.Sums {
		out[i] = s.SHA256
	}
	return out, nil
}

// SetRate changes the session's rate limits, for every transfer.
func (c *Client) SetRate(ctx context.Context, r Rate) error {
	cc, err := c.conn(ctx)
	if err != nil {
		return err
	}
	lim := cc.sess.pathStats().limits
	if r.Target > 0 {
		lim.Target = float64(r.Target) / 8
	}
	if r.Min > 0 {
		lim.Min = float64(r.Min) / 8
	}
	if r.Policy != "" {
		lim.Policy = string(r.Policy)
	}
	cc.sess.setLimits(lim)
	return cc.call(ctx, "rate", rateReq{Target: r.Target, Min: r.Min, Policy: string(r.Policy)}, nil)
}

func newTransferID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
