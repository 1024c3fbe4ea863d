package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/chute/chute/engine"
)

// A running mount answers `chute transfers` on a unix socket beside its
// mount record: one JSON request per connection, one JSON answer.

type controlReq struct {
	Op     string `json:"op"` // list, pause, resume, cancel, rate
	ID     string `json:"id,omitempty"`
	Target int64  `json:"target_bps,omitempty"`
	Min    int64  `json:"min_bps,omitempty"`
	Policy string `json:"policy,omitempty"`
}

type controlResp struct {
	Transfers []transferJSON `json:"transfers,omitempty"`
	Err       string         `json:"error,omitempty"`
}

// transferJSON is a transfer as scripts see it.
type transferJSON struct {
	ID         string  `json:"id"`
	Direction  string  `json:"direction"`
	Bucket     string  `json:"bucket"`
	Key        string  `json:"key"`
	State      string  `json:"state"`
	Size       int64   `json:"size"`
	Done       int64   `json:"bytes_done"`
	Skipped    int64   `json:"bytes_skipped"`
	Sent       int64   `json:"bytes_sent"`
	Retrans    int64   `json:"bytes_retransmitted"`
	Rate       float64 `json:"rate_bps"`
	Target     int64   `json:"target_bps"`
	Policy     string  `json:"policy"`
	RTTms      float64 `json:"rtt_ms"`
	Elapsed    float64 `json:"elapsed_seconds"`
	ETASeconds float64 `json:"eta_seconds,omitempty"`
	Err        string  `json:"error,omitempty"`
}

func toTransferJSON(s engine.Stats) transferJSON {
	return transferJSON{
		ID: s.ID, Direction: string(s.Direction), Bucket: s.Bucket, Key: s.Key, State: string(s.State),
		Size: s.Size, Done: s.Done, Skipped: s.Skipped, Sent: s.Sent, Retrans: s.Retrans, Rate: s.Rate,
		Target: s.Target, Policy: string(s.Policy), RTTms: float64(s.RTT.Microseconds()) / 1000,
		Elapsed: s.Elapsed.Seconds(), ETASeconds: s.ETA().Seconds(), Err: s.Err,
	}
}

// serveControl answers control requests for c on a unix socket at path
// until stop is called.
func serveControl(path string, c *engine.Client, log *slog.Logger) (stop func(), err error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	os.Chmod(path, 0o600)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				var req controlReq
				if err := json.NewDecoder(conn).Decode(&req); err != nil {
					json.NewEncoder(conn).Encode(controlResp{Err: "bad request: " + err.Error()})
					return
				}
				resp := handleControl(c, req)
				if resp.Err != "" {
					log.Info("transfer control refused", "op", req.Op, "id", req.ID, "err", resp.Err)
				}
				json.NewEncoder(conn).Encode(resp)
			}()
		}
	}()
	return func() {
		ln.Close()
		<-done
		os.Remove(path)
	}, nil
}

func handleControl(c *engine.Client, req controlReq) controlResp {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	switch req.Op {
	case "list":
	case "pause", "resume":
		err = c.Pause(ctx, req.ID, req.Op == "pause")
	case "cancel":
		err = c.Cancel(req.ID)
	case "rate":
		if req.ID != "" {
			if req.Min != 0 || req.Policy != "" {
				err = errors.New("a transfer takes only a target rate; minimum and policy belong to the whole mount (leave out the id)")
			} else {
				err = c.SetTransferRate(ctx, req.ID, req.Target)
			}
		} else {
			err = c.SetRate(ctx, engine.Rate{Target: req.Target, Min: req.Min, Policy: engine.Policy(req.Policy)})
		}
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		return controlResp{Err: err.Error()}
	}
	var resp controlResp
	for _, s := range c.Transfers() {
		resp.Transfers = append(resp.Transfers, toTransferJSON(s))
	}
	return resp
}

// callControl sends one request to a mount's control socket.
func callControl(path string, req controlReq) (controlResp, error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return controlResp{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return controlResp{}, err
	}
	var resp controlResp
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return controlResp{}, err
	}
	if resp.Err != "" {
		return resp, errors.New(resp.Err)
	}
	return resp, nil
}
