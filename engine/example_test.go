package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/chute/chute/engine"
)

// memWriter is an in-memory io.WriterAt for the example.
type memWriter struct{ b []byte }

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

// Example runs a transfer node on loopback with its folder store, and
// copies an object up and back.
func Example() {
	dir, _ := os.MkdirTemp("", "chute-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// A client key, authorized on the server.
	key := filepath.Join(dir, "id_ed25519")
	pub, err := engine.GenerateKey(key, "example")
	if err != nil {
		log.Fatal(err)
	}
	node := filepath.Join(dir, "node")
	os.MkdirAll(node, 0o700)
	os.WriteFile(filepath.Join(node, "authorized_keys"), []byte(pub+"\n"), 0o600)

	srv, err := engine.NewServer(engine.ServerConfig{DataDir: node, Listen: "127.0.0.1:0", Buckets: []string{"photos"}})
	if err != nil {
		log.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go srv.Serve(sctx)

	signer, err := engine.LoadKey(key)
	if err != nil {
		log.Fatal(err)
	}
	c, err := engine.Dial(ctx, srv.Addr().String(), engine.ClientConfig{Signer: signer, KnownHosts: filepath.Join(dir, "known_hosts")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	data := bytes.Repeat([]byte("far away bucket "), 1<<16) // 1 MiB: a UDP transfer
	up, err := c.Upload(ctx, engine.UploadRequest{Bucket: "photos", Key: "notes/far.txt", Source: bytes.NewReader(data), Size: int64(len(data))})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("uploaded", up.Object.Key, up.Object.Size, "bytes")

	var back memWriter
	down, err := c.Download(ctx, engine.DownloadRequest{Bucket: "photos", Key: "notes/far.txt", Length: -1, Dest: &back})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("downloaded", len(back.b), "bytes; same:", bytes.Equal(back.b, data), "; checksums agree:", down.SHA256 == up.SHA256)
	// Output:
	// uploaded notes/far.txt 1048576 bytes
	// downloaded 1048576 bytes; same: true ; checksums agree: true
}
