package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// transfersOf lists a mount's transfers through `chute transfers --json`.
func transfersOf(c *client, mp string) []transferJSON {
	c.t.Helper()
	r := c.ok("transfers", mp, "--json")
	var out []transferJSON
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var tj transferJSON
		if err := json.Unmarshal([]byte(line), &tj); err != nil {
			c.t.Fatalf("transfers --json line %q: %v", line, err)
		}
		out = append(out, tj)
	}
	return out
}

// TestMountTransfersControl lists a write-back mount's upload while it
// runs, pauses it (no progress while paused), resumes it, re-rates it, and
// then lets unmount finish it.
func TestMountTransfersControl(t *testing.T) {
	testenv.RequireFUSE(t)
	n := startNode(t, "bkt")
	c := newClient(t)
	n.authorize("", c.pub)
	mp := t.TempDir()
	c.ok("mount", "--daemon", "--write-back", "--target-rate", "40m", "--cache-dir", t.TempDir(), n.url("bkt"), mp)
	detachOnCleanup(t, mp)
	src := filepath.Join(t.TempDir(), "w")
	sum := makeFile(t, src, 48<<20, 7)
	data, _ := os.ReadFile(src)
	if err := os.WriteFile(filepath.Join(mp, "w.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	var tr transferJSON
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && tr.ID == "" {
		for _, x := range transfersOf(c, mp) {
			if x.Key == "w.bin" && x.Direction == "upload" && x.State == "running" && x.Done > 0 {
				tr = x
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tr.ID == "" {
		t.Fatal("the write-back upload never showed as running in chute transfers")
	}
	if tr.Size != 48<<20 || tr.Bucket != "bkt" {
		t.Fatalf("listed transfer: %+v", tr)
	}
	table := c.ok("transfers", mp)
	if !strings.Contains(table.stdout, tr.ID) || !strings.Contains(table.stdout, "w.bin") {
		t.Fatalf("the table does not show the upload:\n%s", table.stdout)
	}

	c.ok("transfers", mp, "pause", tr.ID)
	time.Sleep(300 * time.Millisecond) // packets already in flight land
	before := doneOf(t, c, mp, tr.ID)
	time.Sleep(time.Second)
	after := doneOf(t, c, mp, tr.ID)
	if after.State != "paused" || after.Done != before.Done {
		t.Fatalf("paused transfer: state %s, bytes %d then %d", after.State, before.Done, after.Done)
	}
	c.ok("transfers", mp, "resume", tr.ID)
	c.ok("transfers", mp, "rate", tr.ID, "--target-rate", "400m")
	c.ok("transfers", mp, "rate", "--target-rate", "1g", "--policy", "fair")
	if r := c.run("transfers", mp, "rate", tr.ID, "--policy", "low"); r.code == 0 || !strings.Contains(r.stderr, "whole mount") {
		t.Errorf("a per-transfer policy was not refused clearly: %v", r)
	}
	if r := c.run("transfers", mp, "pause", "nosuchid"); r.code == 0 || !strings.Contains(r.stderr, "no transfer") {
		t.Errorf("pausing an unknown transfer: %v", r)
	}

	c.ok("unmount", mp)
	if got := sha256File(t, n.objectPath("bkt", "w.bin")); got != sum {
		t.Fatal("the object differs after the controlled upload")
	}
	if r := c.run("transfers", mp); r.code == 0 {
		t.Errorf("transfers of an unmounted folder succeeded: %v", r)
	}
}

func doneOf(t *testing.T, c *client, mp, id string) transferJSON {
	t.Helper()
	for _, x := range transfersOf(c, mp) {
		if x.ID == id {
			return x
		}
	}
	t.Fatalf("transfer %s not listed", id)
	return transferJSON{}
}
