package linkem

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Emulator is a live emulated link between two network namespaces. Its
// methods are safe for concurrent use.
type Emulator struct {
	name     string
	mtu      int
	log      *slog.Logger
	near     *Namespace
	far      *Namespace
	rec      *record
	tuns     [2]*os.File // near, far
	pipes    [2]*pipe    // indexed by Dir
	wg       sync.WaitGroup
	done     chan struct{}
	failOnce sync.Once
	err      error // first forwarding error; read after done is closed

	mu     sync.Mutex // guards links and closed
	links  [2]Link
	closed bool
	close  sync.Once
	cerr   error
}

// New creates the two namespaces, their TUN devices and addresses, and
// starts forwarding between them. ctx bounds the set-up only; the
// emulator runs until Close. Before creating anything, New removes what
// emulators whose owner died left behind. It needs root (CAP_SYS_ADMIN
// and CAP_NET_ADMIN).
func New(ctx context.Context, cfg Config) (_ *Emulator, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if _, err := Cleanup(log); err != nil {
		log.Warn("linkem: cleaning up leftovers", "err", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		var b [4]byte
		rand.Read(b[:])
		name = hex.EncodeToString(b[:])
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	rec, err := claim(name, log)
	if err != nil {
		return nil, err
	}
	nearAddr, farAddr := cfg.NearAddr, cfg.FarAddr
	if !nearAddr.IsValid() {
		x := pickSubnet(name)
		nearAddr = netip.AddrFrom4([4]byte{10, 201, x, 1})
		farAddr = netip.AddrFrom4([4]byte{10, 201, x, 2})
	}
	e := &Emulator{
		name:  name,
		mtu:   mtu,
		log:   log.With("linkem", name),
		near:  &Namespace{name: NetnsName(name, "near"), addr: nearAddr, peer: farAddr},
		far:   &Namespace{name: NetnsName(name, "far"), addr: farAddr, peer: nearAddr},
		rec:   rec,
		done:  make(chan struct{}),
		links: [2]Link{cfg.NearToFar, cfg.FarToNear},
	}
	defer func() {
		if err != nil {
			e.teardown()
		}
	}()
	if err := rec.write(e.Info()); err != nil {
		return nil, err
	}
	for i, ns := range []*Namespace{e.near, e.far} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var tun *os.File
		err := createNetns(ns.name, func() error {
			var err error
			tun, err = setupEnd(ns.addr, ns.peer, mtu, !cfg.NoOffload, cfg.Sysctls)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("linkem: set up %s: %w", ns.name, err)
		}
		e.tuns[i] = tun
	}

	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	epoch := time.Now()
	for _, d := range []Dir{NearToFar, FarToNear} {
		in, out := e.tuns[0], e.tuns[1]
		if d == FarToNear {
			in, out = out, in
		}
		sh := newShaper(e.links[d], e.limit(d), seed+uint64(d)*0x5851f42d4c957f2d)
		p, err := newPipe(d, in, out, mtu, !cfg.NoOffload, sh, epoch)
		if err != nil {
			return nil, err
		}
		e.pipes[d] = p
	}
	for _, p := range e.pipes {
		e.wg.Add(2)
		go e.run(p.readLoop)
		go e.run(p.writeLoop)
	}
	e.log.Info("linkem: up", "near", e.near.name, "near_addr", nearAddr, "far", e.far.name,
		"far_addr", farAddr, "mtu", mtu,
		"near_to_far", fmtLink(e.links[NearToFar]), "far_to_near", fmtLink(e.links[FarToNear]))
	return e, nil
}

// run runs one forwarding loop; the first error stops the emulator's
// forwarding (Done closes, Err reports it) but removes nothing: Close
// does.
func (e *Emulator) run(loop func() error) {
	defer e.wg.Done()
	if err := loop(); err != nil {
		e.fail(err)
	}
}

func (e *Emulator) fail(err error) {
	e.failOnce.Do(func() {
		e.err = err
		if err != nil {
			e.log.Error("linkem: forwarding stopped", "err", err)
		}
		close(e.done)
	})
	e.stopForwarding()
}

// limit is direction d's drop-tail limit. e.links must not change meanwhile.
func (e *Emulator) limit(d Dir) int64 { return e.links[d].queueLimit(e.links[1-d].Delay) }

// Name returns the emulator's name.
func (e *Emulator) Name() string { return e.name }

// Near returns the near namespace (where clients usually run).
func (e *Emulator) Near() *Namespace { return e.near }

// Far returns the far namespace (where servers usually run).
func (e *Emulator) Far() *Namespace { return e.far }

// NearAddr returns the near end's address.
func (e *Emulator) NearAddr() netip.Addr { return e.near.addr }

// FarAddr returns the far end's address.
func (e *Emulator) FarAddr() netip.Addr { return e.far.addr }

// MTU returns the TUN devices' MTU.
func (e *Emulator) MTU() int { return e.mtu }

// Info describes the emulator for scripts.
func (e *Emulator) Info() Info {
	end := func(n *Namespace) End {
		return End{Netns: n.name, Path: n.Path(), Addr: n.addr, Dev: TUNName}
	}
	return Info{Name: e.name, PID: os.Getpid(), MTU: e.mtu, Near: end(e.near), Far: end(e.far), Alive: true}
}

// Link returns direction d's parameters.
func (e *Emulator) Link(d Dir) Link {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.links[d]
}

// SetLink changes direction d's parameters for packets arriving from now
// on; packets already accepted keep their due times. A default queue
// (Queue zero) follows the new round-trip delay, in both directions.
func (e *Emulator) SetLink(d Dir, l Link) error {
	if !d.valid() {
		return fmt.Errorf("linkem: bad direction %v", d)
	}
	if err := l.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("linkem: emulator closed")
	}
	e.links[d] = l
	for _, dd := range []Dir{NearToFar, FarToNear} {
		e.pipes[dd].setLink(e.links[dd], e.limit(dd))
	}
	e.log.Info("linkem: link changed", "dir", d.String(), "link", fmtLink(l))
	return nil
}

// Stats returns the counters of both directions.
func (e *Emulator) Stats() Stats {
	st := Stats{NearToFar: e.pipes[NearToFar].stats(), FarToNear: e.pipes[FarToNear].stats()}
	for _, x := range []struct {
		ns *Namespace
		to *uint64
	}{{e.near, &st.NearToFar.KernelDrops}, {e.far, &st.FarToNear.KernelDrops}} {
		// After Close the namespaces are gone; the counters stay zero.
		x.ns.Do(func() error {
			n, err := tunTxDropped()
			*x.to = n
			return err
		})
	}
	return st
}

// Done is closed when forwarding stops: after Close, or when a forwarding
// loop failed (then Err says why).
func (e *Emulator) Done() <-chan struct{} { return e.done }

// Err returns the error that stopped forwarding, or nil.
func (e *Emulator) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

// Close stops forwarding and removes the namespaces, the TUN devices and
// the emulator's record. Processes still running inside keep their
// namespace alive but unnamed. Close is idempotent.
func (e *Emulator) Close() error {
	e.close.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.fail(nil)
		e.cerr = e.teardown()
		e.log.Info("linkem: down")
	})
	return e.cerr
}

// stopForwarding closes the timers and TUN devices, which ends the loops.
func (e *Emulator) stopForwarding() {
	for _, p := range e.pipes {
		if p != nil {
			p.close()
		}
	}
	for _, t := range e.tuns {
		if t != nil {
			t.Close()
		}
	}
}

// teardown undoes New: stop the loops, remove the namespaces, release the
// record.
func (e *Emulator) teardown() error {
	e.stopForwarding()
	e.wg.Wait()
	var errs []error
	for _, ns := range []*Namespace{e.near, e.far} {
		errs = append(errs, deleteNetns(ns.name))
	}
	err := errors.Join(errs...)
	if err == nil {
		e.rec.release(e.name)
	} else {
		// Keep the record so that a later Cleanup finds the leftovers.
		e.rec.f.Close()
	}
	return err
}

func fmtLink(l Link) string {
	s := fmt.Sprintf("delay=%v loss=%g", l.Delay, l.Loss)
	if l.Jitter > 0 {
		s += fmt.Sprintf(" jitter=%v", l.Jitter)
	}
	if l.LossBurst > 1 {
		s += fmt.Sprintf(" burst=%g", l.LossBurst)
	}
	if l.Rate > 0 {
		s += " rate=" + l.Rate.String()
		if l.Queue > 0 {
			s += fmt.Sprintf(" queue=%d", l.Queue)
		}
	}
	return s
}
