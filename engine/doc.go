// Package engine is chute's transfer protocol, both ends: a transfer node
// (Server) that sits near the object store, and a Client that copies to and
// from it.
//
// # Shape
//
// A client opens SSH to the server's control port (TCP 33001 by default),
// authenticates with an ordinary SSH key listed in the server's OpenSSH
// authorized_keys file, and opens a control channel (SSH channel type
// "control@chute") of JSON requests (stat, list, put, copy, delete,
// transfer set-up and commit). The first request agrees on a UDP data
// session: a random session id and one fresh key per direction, sent over
// SSH. It rides in the channel-open message, so that both cost one round
// trip, and so does the request that made the client connect, behind it,
// when that needs no data session. (Servers also take the control channel
// as the "chute" subsystem of a session channel, as earlier clients asked
// for it.) Data then flows on one UDP
// port that all sessions share (33001 by default); nothing on that port
// answers a sender that has not authenticated over SSH first. The control
// connection's TCP is tuned for long lossy paths: a spare connection
// attempt after 250 ms without an answer, and, where Linux allows,
// prompt acknowledgements and a 20 ms retransmission floor (tcptune.go).
//
// # Data path
//
// Every packet is sealed with AES-GCM (256-bit by default; 128-bit, or a
// checksum only with cipher "none"); its header — session, packet number,
// and for data the stream, offset and send time — is authenticated. The
// receiver drops packets that fail authentication, replays, and packets of
// unknown sessions, and counts them.
//
// Loss recovery is driven by the receiver: it acknowledges ranges of
// packet numbers, and reports its measured queueing delay, how many bytes
// it received, and the path's capacity as the spread of the sender's
// first flight showed it (a new session's search for the rate starts from
// half of that). The sender resends only what is missing. Loss is not
// read as congestion: rate control (package congestion) follows queueing
// delay, with Aspera's policies fixed, fair, high and low, and keeps the
// rate within reach of what the receiver reports delivered. The sender
// paces packets and batches system calls (package udpio: sendmmsg, UDP
// GSO, recvmmsg, UDP GRO) where the kernel allows.
//
// One session carries any number of concurrent transfers (streams), which
// share its rate budget round-robin; each may have its own rate cap, be
// paused, or be cancelled.
//
// # Integrity and resume
//
// An upload lands, out of order, in a staging file on the server. The
// server makes received bytes durable, hashes the contiguous prefix with
// SHA-256, and sends parts to its store as a multipart upload: finished
// ones from the staging file, and the one arriving as its bytes come, so
// that the last is stored moments after the last byte.
// After each part it sends the client a checkpoint (the store's upload id
// and the hash state at the end of the finished parts). The object appears
// only when the server's SHA-256 of the whole object matches the client's.
// The client does not hash its source before the upload begins: the bytes
// go at once and the checksum follows ("upload_sha", and again with the
// commit). With resume "none", where the answer cannot spare any byte,
// the bytes do not even wait for the upload request's answer: they leave
// with it, and the server holds data for a stream it has not set up yet,
// unacknowledged, until the request is through (at most 16 MiB per
// session, for 5 s). Since S3 fixes an object's metadata, where the checksum is
// recorded, when its multipart upload is created, the server creates it
// once the checksum comes (a store that takes metadata late, the folder
// store, gets it set instead); bytes that arrive before are staged. The
// commit goes out once every byte has been sent once, not after the last
// acknowledgement; the server answers it when the object is stored.
// A transfer interrupted in any way — client killed, server restarted,
// network gone — resumes: the server offers what it holds (from its
// staging area, or, through another server in front of the same store,
// from the client's checkpoint), the client checks it by its resume policy
// (none, attrs, sparse, full), and only the rest is sent.
//
// Downloads read the object from the store in order and keep unacknowledged
// bytes in memory to resend them; a whole-object download is hashed on the
// way, and the client compares that SHA-256 with what it wrote. The
// server sends the checksum and its counters ("download_sent") as it sends
// the last new byte, so the client that holds every byte is done without
// another round trip.
//
// # Errors
//
// Errors from the server's store arrive wrapping the cos package's
// sentinels (cos.ErrNotFound, cos.ErrPermission, cos.ErrInvalidKey, ...);
// connection trouble wraps ErrUnreachable; a changed server key is
// ErrHostKeyChanged; a refused client key ErrAuth.
package engine
