package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/chute/chute/internal/linkem"
)

// The control socket lets `linkem set` and `linkem stats` reach a running
// `linkem up`: one JSON request per line, one JSON reply per line.

// controlPath is the socket of the emulator called name. It sits beside
// the emulator's record, so cleanup removes it with the record.
func controlPath(name string) string { return filepath.Join(linkem.RunDir, name+".sock") }

type request struct {
	Op        string       `json:"op"` // "get" or "set"
	NearToFar *linkem.Link `json:"near_to_far,omitempty"`
	FarToNear *linkem.Link `json:"far_to_near,omitempty"`
}

type reply struct {
	Error     string       `json:"error,omitempty"`
	Info      linkem.Info  `json:"info"`
	NearToFar linkem.Link  `json:"near_to_far"`
	FarToNear linkem.Link  `json:"far_to_near"`
	Stats     linkem.Stats `json:"stats"`
}

// serveControl answers requests on the control socket until ctx ends.
func serveControl(ctx context.Context, e *linkem.Emulator, log *slog.Logger) (stop func(), err error) {
	path := controlPath(e.Name())
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handleControl(c, e, log)
		}
	}()
	return func() { ln.Close(); os.Remove(path) }, nil
}

func handleControl(c net.Conn, e *linkem.Emulator, log *slog.Logger) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(reply{Error: "bad request: " + err.Error()})
		return
	}
	var rep reply
	switch req.Op {
	case "get":
	case "set":
		for _, d := range []struct {
			dir linkem.Dir
			l   *linkem.Link
		}{{linkem.NearToFar, req.NearToFar}, {linkem.FarToNear, req.FarToNear}} {
			if d.l == nil {
				continue
			}
			if err := e.SetLink(d.dir, *d.l); err != nil {
				rep.Error = err.Error()
				break
			}
		}
	default:
		rep.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	rep.Info = e.Info()
	rep.NearToFar, rep.FarToNear = e.Link(linkem.NearToFar), e.Link(linkem.FarToNear)
	rep.Stats = e.Stats()
	if err := json.NewEncoder(c).Encode(rep); err != nil {
		log.Warn("control reply", "err", err)
	}
}

// callControl sends req to the emulator called name.
func callControl(ctx context.Context, name string, req request) (reply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", controlPath(name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return reply{}, fmt.Errorf("%w: %s (no control socket; is `linkem up --name %s` running?)", linkem.ErrNotFound, name, name)
		}
		return reply{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return reply{}, err
	}
	var rep reply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return reply{}, fmt.Errorf("control reply: %w", err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
