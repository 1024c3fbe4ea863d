// Package linkem is chute's link emulator: two network namespaces joined by
// an emulated wide-area link, so that tests and benchmarks can run real
// programs (chute, iperf3, an S3 server) across a long, lossy, slow path on
// one machine.
//
// # Layout
//
// New creates two network namespaces, near and far (named
// "chute-<name>-near" and "chute-<name>-far", bound under /run/netns like
// `ip netns add` does). Each holds a TUN device, linkem0, configured
// point-to-point: near has 10.201.X.1, far has 10.201.X.2 (X chosen so that
// live emulators on the machine differ; both overridable), plus lo brought
// up. The Go process reads every IP packet the kernel sends out of one TUN
// device, passes it through that direction's emulated link, and writes it
// into the other TUN device. TCP, UDP and ICMP are treated alike: the
// emulator sees IP packets only. The link is IPv4: IPv6 is disabled on
// the TUN devices.
//
// # The emulated link, per direction
//
// A packet entering a direction meets, in order:
//
//  1. random loss: independent (Bernoulli) with probability Link.Loss, or, when
//     Link.LossBurst > 1, a two-state Gilbert model with the same mean loss
//     rate and mean burst length LossBurst packets. Lost packets take no
//     room in the queue and no time on the bottleneck (like netem's loss).
//  2. the bottleneck: when Link.Rate is set, a drop-tail queue of Link.Queue
//     bytes (default one bandwidth-delay product, at least 2 ms of the rate
//     and 64 KiB) in front of a serializer at
//     Rate bits per second, counting whole IP packets. A packet that does not
//     fit behind the bytes still waiting is dropped.
//  3. propagation: Link.Delay plus, with Link.Jitter, a uniform random offset
//     in [-Jitter, +Jitter]. Jitter never reorders: a packet whose drawn
//     delay would let it overtake its predecessor leaves right after it
//     instead, so large jitter at high packet rates skews delays upward.
//
// Decisions are made by a deterministic shaper that takes the current time
// as an argument; the forwarding loops only read the clock, hold packets in
// a FIFO and release each one at its due time. Release uses a timerfd on
// CLOCK_MONOTONIC driven through the Go runtime's poller. The timer is set
// to fire early by a learned estimate of the wake-up latency (its 5th
// percentile), and the writer spins out the rest, so a packet never leaves
// before its due time and usually leaves 30-70µs after it; Stats reports
// the measured lateness. A round trip with zero configured delay takes
// about 70-120µs through both forwarders.
//
// # Capacity
//
// TCP over IPv4 crosses the TUN devices in super-packets of up to 64 KiB
// (see Config.NoOffload): the reader cuts them into MSS-sized segments,
// each of which meets the link on its own, and the writer glues segments
// that leave together back into one super-packet. Other packets cost one
// read and one write system call each, and the kernel's work for the
// endpoints' stacks largely runs in the forwarder's threads. On a 2-core
// virtual machine shared with other work one TCP flow reached about 4
// Gbit/s with no delay and about 1.3 Gbit/s at 20 ms (window-limited),
// against 0.5-0.7 Gbit/s without offload; UDP reaches 350-500 Mbit/s of
// 1400-byte datagrams (BenchmarkTCP, BenchmarkUDP; `linkem up` at
// niceness -10 with iperf3).
//
// When the forwarder falls behind, its reader stops until the writer
// catches up (Stats.Stalls) and the sending kernel drops what overflows
// its TUN queue (Stats.KernelDrops): overload shows up as drops, as at a
// saturated router, not as ever-growing delay. Any non-zero KernelDrops
// means the machine, not the emulated link, limited that run.
//
// # Running things inside
//
// Namespace.Command builds an exec.Cmd that enters only the namespace's
// network (nsenter --net=PATH), so the process still sees the host's
// mounts. Namespace.Do runs a Go function on an OS thread switched into
// the namespace; sockets created there stay in the namespace, which is
// how tests listen and dial at Go level (Namespace.Listen, ListenPacket,
// Dial).
//
// # Bookkeeping and cleanup
//
// Every live emulator holds an exclusive flock on /run/chute-linkem/<name>.json,
// which also records its namespaces and addresses. New first removes the
// namespaces of emulators whose owner died without Close (their lock is
// free); Cleanup does the same on demand, and Down stops a named emulator.
// Close stops forwarding and removes the namespaces and the record.
package linkem
