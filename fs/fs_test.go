package fs

import (
	"os"
	"testing"
)

func TestCreateReadBack(t *testing.T) {
	tm := mountFake(t, nil)
	data := []byte("hello, bucket\n")
	mustWrite(t, tm.path("a.txt"), data)
	got, ok := tm.object("a.txt")
	if !ok {
		t.Fatal("a.txt not on the server after close")
	}
	equalBytes(t, "server copy", got, data)
	equalBytes(t, "read back", mustRead(t, tm.path("a.txt")), data)
	st, err := os.Stat(tm.path("a.txt"))
	if err != nil || st.Size() != int64(len(data)) {
		t.Fatalf("stat: %v size %v", err, st)
	}
}
