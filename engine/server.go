package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/ranges"
	"github.com/chute/chute/engine/udpio"
	"github.com/chute/chute/engine/wire"
)

// ServerConfig configures a Server. Zero fields take the documented
// defaults.
type ServerConfig struct {
	// DataDir holds the host key, the staging area of uploads in progress,
	// and (for the default folder store) the objects. Created when missing.
	DataDir string
	// Store holds the objects; nil means a folder store in DataDir/objects.
	Store cos.Store
	// Listen is the SSH control address; "" means ":33001".
	Listen string
	// UDPPort is the data port; 0 means the control port's number.
	UDPPort int
	// AuthorizedKeys is an OpenSSH authorized_keys file (with chute's
	// options buckets=, prefix=, read-only); "" means DataDir/authorized_keys.
	AuthorizedKeys string
	// Buckets are created at start if missing.
	Buckets []string
	// StaleUploadAge: unfinished uploads older than this are discarded at
	// start and daily; 0 means 7 days.
	StaleUploadAge time.Duration
	// PartConcurrency is how many parts of one upload go to the store at
	// once; 0 means 4.
	PartConcurrency int
	// UDP tunes the data socket (tests and benchmarks).
	UDP udpio.Options
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server is a transfer node: it authenticates clients over SSH, answers
// their control requests, and moves data over one UDP port shared by all
// sessions.
type Server struct {
	cfg   ServerConfig
	store cos.Store
	log   *slog.Logger
	auth  *authorizedKeys
	ssh   *ssh.ServerConfig
	ln    net.Listener
	ep    *endpoint
	udp   *net.UDPConn

	stagingDir string

	mu      sync.Mutex
	conns   map[*serverConn]struct{}
	uploads map[string]*serverUpload // by slot: one live upload per user, bucket and key
	closed  bool

	wg       sync.WaitGroup
	removing sync.WaitGroup // finished staging areas being removed
}

// DefaultPort is the control (TCP) and data (UDP) port.
const DefaultPort = 33001

// NewServer opens the listeners and loads (or makes) the host key.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data folder is needed (--data)")
	}
	if cfg.Listen == "" {
		cfg.Listen = ":" + strconv.Itoa(DefaultPort)
	}
	if cfg.AuthorizedKeys == "" {
		cfg.AuthorizedKeys = filepath.Join(cfg.DataDir, "authorized_keys")
	}
	if cfg.StaleUploadAge == 0 {
		cfg.StaleUploadAge = 7 * 24 * time.Hour
	}
	if cfg.PartConcurrency == 0 {
		cfg.PartConcurrency = 4
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data folder: %w", err)
	}
	if _, err := os.Stat(cfg.AuthorizedKeys); err != nil {
		return nil, fmt.Errorf("server: authorized keys %s: %w (list the clients' public keys there, one per line, as for OpenSSH)", cfg.AuthorizedKeys, err)
	}
	hostKey, err := loadOrCreateHostKey(filepath.Join(cfg.DataDir, "ssh_host_ed25519_key"))
	if err != nil {
		return nil, err
	}
	store := cfg.Store
	if store == nil {
		store, err = cos.NewFolder(filepath.Join(cfg.DataDir, "objects"))
		if err != nil {
			return nil, fmt.Errorf("server: folder store: %w", err)
		}
	}
	s := &Server{
		cfg:        cfg,
		store:      store,
		log:        log,
		auth:       &authorizedKeys{path: cfg.AuthorizedKeys},
		stagingDir: filepath.Join(cfg.DataDir, "staging"),
		conns:      map[*serverConn]struct{}{},
		uploads:    map[string]*serverUpload{},
	}
	if err := os.MkdirAll(s.stagingDir, 0o700); err != nil {
		return nil, err
	}
	if _, _, err := s.auth.lookup(hostKey.PublicKey()); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.ssh = &ssh.ServerConfig{
		PublicKeyCallback: s.checkKey,
		ServerVersion:     "SSH-2.0-chute_" + serverVersion,
	}
	s.ssh.AddHostKey(hostKey)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range cfg.Buckets {
		if err := store.CreateBucket(ctx, b); err != nil && !errors.Is(err, cos.ErrExists) {
			return nil, fmt.Errorf("server: bucket %s: %w", b, err)
		}
	}

	s.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: control port: %w", err)
	}
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	udpPort := cfg.UDPPort
	if udpPort == 0 {
		udpPort, _ = strconv.Atoi(port)
	}
	s.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host), Port: udpPort})
	if err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("server: data port: %w", err)
	}
	s.ep, err = newEndpoint(s.udp, cfg.UDP, log)
	if err != nil {
		s.ln.Close()
		s.udp.Close()
		return nil, err
	}
	return s, nil
}

const serverVersion = "0.1.0"

// Addr is the control (SSH) address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// UDPAddr is the data address.
func (s *Server) UDPAddr() net.Addr { return s.udp.LocalAddr() }

// Store returns the server's object store.
func (s *Server) Store() cos.Store { return s.store }

// Serve accepts connections until ctx ends or Close is called.
func (s *Server) Serve(ctx context.Context) error {
	go s.sweep(ctx)
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				s.wg.Wait()
				s.removing.Wait()
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handleConn(ctx, c)
		}()
	}
}

// Close stops the server: listeners close, connections drop, uploads in
// progress stay staged for a later resume.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.ln.Close()
	for _, c := range conns {
		c.conn.Close()
	}
	s.ep.close()
	return nil
}

// sweep discards stale staged uploads at start and once a day.
func (s *Server) sweep(ctx context.Context) {
	for {
		cutoff := time.Now().Add(-s.cfg.StaleUploadAge)
		if n := s.sweepStaging(cutoff); n > 0 {
			s.log.Info("discarded stale staged uploads", "count", n)
		}
		for _, b := range s.cfg.Buckets {
			if n, err := s.store.AbortStaleUploads(ctx, b, cutoff); err != nil {
				s.log.Warn("aborting stale uploads", "bucket", b, "err", err)
			} else if n > 0 {
				s.log.Info("aborted stale multipart uploads", "bucket", b, "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(24 * time.Hour):
		}
	}
}

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	k, ok, err := s.auth.lookup(key)
	if err != nil {
		s.log.Error("authorized keys unreadable", "err", err)
		return nil, err
	}
	if !ok {
		s.log.Info("refused key", "user", meta.User(), "remote", meta.RemoteAddr().String(), "key", ssh.FingerprintSHA256(key))
		return nil, fmt.Errorf("key %s is not authorized", ssh.FingerprintSHA256(key))
	}
	acc, _ := json.Marshal(k.access)
	return &ssh.Permissions{Extensions: map[string]string{
		"fingerprint": ssh.FingerprintSHA256(key),
		"access":      string(acc),
	}}, nil
}

// serverConn is one client's SSH connection and its UDP session.
type serverConn struct {
	srv    *Server
	conn   *ssh.ServerConn
	tcp    net.Conn // under conn
	log    *slog.Logger
	access Access
	user   string // key fingerprint: who owns staged uploads
	fr     *framer

	mu        sync.Mutex
	sess      *session
	uploads   map[uint32]*serverUpload
	downloads map[uint32]*serverDownload
}

func (s *Server) handleConn(ctx context.Context, nc net.Conn) {
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tuneControl(nc); err != nil {
		s.log.Debug("control connection keeps the kernel's TCP timers", "remote", nc.RemoteAddr().String(), "err", err)
	}
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.ssh)
	if err != nil {
		// A client's spare connection (see dialControl), a port check: closed
		// before saying anything (reset, since our version line went unread).
		level := slog.LevelInfo
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "ssh handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	c := &serverConn{
		srv:       s,
		conn:      sc,
		tcp:       nc,
		user:      sc.Permissions.Extensions["fingerprint"],
		uploads:   map[uint32]*serverUpload{},
		downloads: map[uint32]*serverDownload{},
	}
	json.Unmarshal([]byte(sc.Permissions.Extensions["access"]), &c.access)
	c.log = s.log.With("remote", sc.RemoteAddr().String(), "key", c.user)
	c.log.Info("client connected", "user", sc.User())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.shutdown()
		c.log.Info("client disconnected")
	}()
	for nch := range chans {
		switch nch.ChannelType() {
		case ChannelType:
			// The open message carries the first request (hello): it is
			// read before anything the channel brings.
			ch, creqs, err := nch.Accept()
			if err != nil {
				continue
			}
			go ssh.DiscardRequests(creqs)
			go c.serve(ctx, ch, nch.ExtraData())
		case "session":
			ch, creqs, err := nch.Accept()
			if err != nil {
				continue
			}
			go func() {
				for req := range creqs {
					ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == SubsystemName
					req.Reply(ok, nil)
					if ok {
						go c.serve(ctx, ch, nil)
					}
				}
			}()
		default:
			nch.Reject(ssh.UnknownChannelType, "only the chute control channel ("+ChannelType+")")
		}
	}
}

// shutdown ends the session; uploads in progress stay staged.
func (c *serverConn) shutdown() {
	c.mu.Lock()
	ups := make([]*serverUpload, 0, len(c.uploads))
	for _, u := range c.uploads {
		ups = append(ups, u)
	}
	downs := make([]*serverDownload, 0, len(c.downloads))
	for _, d := range c.downloads {
		downs = append(downs, d)
	}
	sess := c.sess
	c.mu.Unlock()
	for _, u := range ups {
		u.stop(fmt.Errorf("%w: client disconnected", ErrUnreachable))
	}
	for _, d := range downs {
		d.stop()
	}
	if sess != nil {
		sess.close(fmt.Errorf("%w: client disconnected", ErrUnreachable))
	}
}

// serve answers control requests on one channel; first holds frames that
// came before the channel's own bytes (the channel-open message's).
func (c *serverConn) serve(ctx context.Context, ch ssh.Channel, first []byte) {
	defer ch.Close()
	c.fr = &framer{r: io.MultiReader(bytes.NewReader(first), ch), w: ch}
	for {
		fr, err := c.fr.read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.log.Info("control channel closed", "err", err)
			}
			c.conn.Close()
			return
		}
		if fr.ID == 0 {
			continue
		}
		go func() {
			start := time.Now()
			body, err := c.handle(ctx, fr.Op, fr.Body)
			resp := frame{ID: fr.ID}
			if err != nil {
				resp.Err = toWireErr(err)
				c.log.Debug("request failed", "op", fr.Op, "took", time.Since(start), "err", err)
			} else {
				c.log.Debug("request", "op", fr.Op, "took", time.Since(start))
			}
			if err == nil && body != nil {
				resp.Body, err = json.Marshal(body)
				if err != nil {
					resp.Err = toWireErr(err)
				}
			}
			c.fr.write(resp)
		}()
	}
}

// event sends an unsolicited message to the client.
func (c *serverConn) event(op string, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		return
	}
	c.fr.write(frame{Op: op, Body: b})
}

func decode[T any](raw json.RawMessage) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return v, nil
}

func (c *serverConn) handle(ctx context.Context, op string, raw json.RawMessage) (any, error) {
	switch op {
	case "hello":
		req, err := decode[helloReq](raw)
		if err != nil {
			return nil, err
		}
		return c.hello(req)
	case "stat":
		req, err := decode[objReq](raw)
		if err != nil {
			return nil, err
		}
		if err := c.check("stat", req.Bucket, req.Key, false); err != nil {
			return nil, err
		}
		o, err := c.srv.store.Stat(ctx, req.Bucket, req.Key)
		if err != nil {
			return nil, err
		}
		o.HasMeta = true
		return toObjectJSON(o), nil
	case "list":
		req, err := decode[listReq](raw)
		if err != nil {
			return nil, err
		}
		return c.list(ctx, req)
	case "put":
		req, err := decode[putReq](raw)
		if err != nil {
			return nil, err
		}
		if err := c.check("put", req.Bucket, req.Key, true); err != nil {
			return nil, err
		}
		if len(req.Data) > MaxInline {
			return nil, fmt.Errorf("%w: inline put of %d bytes", ErrProtocol, len(req.Data))
		}
		o, err := c.srv.store.Put(ctx, req.Bucket, req.Key, strings.NewReader(string(req.Data)), int64(len(req.Data)), req.Meta.meta())
		if err != nil {
			return nil, err
		}
		return toObjectJSON(o), nil
	case "delete":
		req, err := decode[objReq](raw)
		if err != nil {
			return nil, err
		}
		if err := c.check("delete", req.Bucket, req.Key, true); err != nil {
			return nil, err
		}
		return nil, c.srv.store.Delete(ctx, req.Bucket, req.Key)
	case "copy":
		req, err := decode[copyReq](raw)
		if err != nil {
			return nil, err
		}
		if err := c.check("copy", req.Bucket, req.Src, false); err != nil {
			return nil, err
		}
		if err := c.check("copy", req.Bucket, req.Dst, true); err != nil {
			return nil, err
		}
		var meta *cos.Meta
		if req.Meta != nil {
			m := req.Meta.meta()
			meta = &m
		}
		o, err := c.srv.store.Copy(ctx, req.Bucket, req.Src, req.Dst, meta)
		if err != nil {
			return nil, err
		}
		return toObjectJSON(o), nil
	case "buckets":
		return c.buckets(ctx)
	case "sums":
		req, err := decode[sumsReq](raw)
		if err != nil {
			return nil, err
		}
		if err := c.check("sums", req.Bucket, req.Key, false); err != nil {
			return nil, err
		}
		return objectSums(ctx, c.srv.store, req.Bucket, req.Key, req.Ranges)
	case "upload":
		req, err := decode[uploadReq](raw)
		if err != nil {
			return nil, err
		}
		return c.startUpload(ctx, req, false)
	case "upload_reset":
		req, err := decode[uploadReq](raw)
		if err != nil {
			return nil, err
		}
		return c.startUpload(ctx, req, true)
	case "upload_sha":
		req, err := decode[uploadSHAReq](raw)
		if err != nil {
			return nil, err
		}
		return nil, c.uploadSHA(req.Stream, req.SHA256)
	case "commit":
		req, err := decode[commitReq](raw)
		if err != nil {
			return nil, err
		}
		return c.commit(ctx, req)
	case "download":
		req, err := decode[downloadReq](raw)
		if err != nil {
			return nil, err
		}
		return c.startDownload(ctx, req)
	case "download_finish":
		req, err := decode[streamReq](raw)
		if err != nil {
			return nil, err
		}
		return c.finishDownload(ctx, req)
	case "cancel":
		req, err := decode[streamReq](raw)
		if err != nil {
			return nil, err
		}
		c.cancel(req.Stream, req.Discard)
		return nil, nil
	case "rate":
		req, err := decode[rateReq](raw)
		if err != nil {
			return nil, err
		}
		return nil, c.setRate(req)
	}
	return nil, fmt.Errorf("%w: unknown operation %q", ErrProtocol, op)
}

// check validates bucket and key and the key's access.
func (c *serverConn) check(op, bucket, key string, write bool) error {
	if err := cos.ValidBucket(bucket); err != nil {
		return err
	}
	if err := cos.ValidKey(key); err != nil {
		return &cos.Error{Op: op, Bucket: bucket, Key: key, Err: err}
	}
	return c.access.Check(op, bucket, key, write)
}

func (c *serverConn) hello(req helloReq) (any, error) {
	if req.Version != ProtocolVersion {
		return nil, fmt.Errorf("%w: client speaks protocol %d, server %d: upgrade the older side", ErrProtocol, req.Version, ProtocolVersion)
	}
	cipher, err := ParseCipher(req.Cipher)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		return nil, fmt.Errorf("%w: hello twice", ErrProtocol)
	}
	lim := congestion.Limits{Target: float64(req.Target) / 8, Min: float64(req.Min) / 8, Policy: req.Policy, Start: float64(max(req.Start, 0)) / 8}
	var (
		id       uint32
		c2s, s2c []byte
		sess     *session
	)
	// Session ids are 32 random bits: draw again on the rare one a live
	// session holds.
	for range 8 {
		id, c2s, s2c, err = newSessionKeys(string(cipher))
		if err != nil {
			return nil, err
		}
		sess, err = newSession(c.srv.ep, sessionParams{
			id: id, cipher: string(cipher), sendKey: s2c, recvKey: c2s,
			packetSize: req.PacketSize, limits: lim, holdEarly: true,
			onHello: func(sess *session, h wire.Header, hello wire.Hello, from netip.AddrPort, now time.Time) {
				if h.Type == wire.TypeHello {
					sess.sendHello(wire.TypeHelloAck, wire.Hello{Time: sess.micros(now), Echo: hello.Time})
				}
			},
		}, c.log)
		if !errors.Is(err, errSessionTaken) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	c.sess = sess
	_, port, _ := net.SplitHostPort(c.srv.udp.LocalAddr().String())
	udpPort, _ := strconv.Atoi(port)
	return helloResp{Version: ProtocolVersion, Session: id, UDPPort: udpPort, C2S: c2s, S2C: s2c, Server: serverVersion, EarlyData: true}, nil
}

func (c *serverConn) session() (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil, fmt.Errorf("%w: no data session (hello first)", ErrProtocol)
	}
	return c.sess, nil
}

func (c *serverConn) list(ctx context.Context, req listReq) (any, error) {
	if err := cos.ValidBucket(req.Bucket); err != nil {
		return nil, err
	}
	if err := c.access.CheckList(req.Bucket, req.Prefix); err != nil {
		return nil, err
	}
	page, err := c.srv.store.List(ctx, req.Bucket, cos.ListOptions{
		Prefix: req.Prefix, Delimiter: req.Delimiter, StartAfter: req.StartAfter, MaxKeys: req.MaxKeys,
	})
	if err != nil {
		return nil, err
	}
	resp := listResp{Objects: []objectJSON{}, CommonPrefixes: []string{}, NextStartAfter: page.NextStartAfter}
	// A key limited to a prefix sees, above it, only the way down to it.
	visible := func(k string) bool {
		p := c.access.Prefix
		return p == "" || strings.HasPrefix(k, p) || strings.HasPrefix(p, k)
	}
	shown := cos.ListPage{NextStartAfter: page.NextStartAfter}
	for _, o := range page.Objects {
		if visible(o.Key) {
			shown.Objects = append(shown.Objects, o)
		}
	}
	for _, p := range page.CommonPrefixes {
		if visible(p) {
			shown.CommonPrefixes = append(shown.CommonPrefixes, p)
		}
	}
	// Metadata for the whole page, fetched here next to the store in
	// parallel, saves a client far away one round trip per entry.
	if req.Meta {
		if err := cos.FillMeta(ctx, c.srv.store, req.Bucket, &shown, 32); err != nil {
			return nil, err
		}
	}
	for _, o := range shown.Objects {
		resp.Objects = append(resp.Objects, toObjectJSON(o))
	}
	resp.CommonPrefixes = append(resp.CommonPrefixes, shown.CommonPrefixes...)
	for _, m := range shown.Markers {
		resp.Markers = append(resp.Markers, toObjectJSON(m))
	}
	return resp, nil
}

func (c *serverConn) buckets(ctx context.Context) (any, error) {
	var out []string
	for _, b := range c.srv.cfg.Buckets {
		if c.access.BucketAllowed(b) {
			out = append(out, b)
		}
	}
	for _, b := range c.access.Buckets {
		if ok, err := c.srv.store.BucketExists(ctx, b); err == nil && ok && !contains(out, b) {
			out = append(out, b)
		}
	}
	return bucketsResp{Buckets: out}, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (c *serverConn) cancel(stream uint32, discard bool) {
	c.mu.Lock()
	u := c.uploads[stream]
	d := c.downloads[stream]
	delete(c.uploads, stream)
	c.mu.Unlock()
	if u != nil {
		if discard {
			u.stop(ErrCancelled)
		} else {
			u.stop(fmt.Errorf("%w: the client stopped the upload", ErrUnreachable))
		}
	}
	if d != nil {
		d.stop()
	}
}

func (c *serverConn) setRate(req rateReq) error {
	sess, err := c.session()
	if err != nil {
		return err
	}
	if req.Stream == 0 {
		lim := sess.pathStats().limits
		if req.Target > 0 {
			lim.Target = float64(req.Target) / 8
		}
		if req.Min > 0 {
			lim.Min = float64(req.Min) / 8
		}
		if req.Policy != "" {
			p, err := ParsePolicy(req.Policy)
			if err != nil {
				return err
			}
			lim.Policy = string(p)
		}
		sess.setLimits(lim)
		return nil
	}
	c.mu.Lock()
	d := c.downloads[req.Stream]
	c.mu.Unlock()
	if d == nil {
		return nil // an upload: the client paces it
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if req.Target > 0 {
		d.st.setCap(float64(req.Target)/8, time.Now())
	}
	if req.Pause != nil {
		d.st.setPaused(*req.Pause)
	}
	sess.signal()
	return nil
}

// objectSums hashes ranges of a stored object.
func objectSums(ctx context.Context, store cos.Store, bucket, key string, rs []Range) (sumsResp, error) {
	var resp sumsResp
	if len(rs) > 4096 {
		return resp, fmt.Errorf("%w: too many ranges", ErrProtocol)
	}
	for _, r := range rs {
		sum, err := hashStoreRange(ctx, store, bucket, key, r.Off, r.Len)
		if err != nil {
			return resp, err
		}
		resp.Sums = append(resp.Sums, sampleSum{Off: r.Off, Len: r.Len, SHA256: sum})
	}
	return resp, nil
}

// needOf returns [off, off+n) minus have.
func needOf(off, n int64, have []Range) *ranges.Set {
	need := ranges.Of(ranges.Range{Off: off, Len: n})
	for _, h := range have {
		need.Remove(h.Off, h.Len)
	}
	return need
}
