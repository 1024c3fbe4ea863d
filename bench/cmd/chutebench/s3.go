package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
)

// s3Store is an S3 endpoint and its one identity.
type s3Store struct {
	Endpoint  string `json:"endpoint"`
	Region    string `json:"region"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
	PID       int    `json:"pid"` // the weed server's process id

	// at is where the endpoint is reachable from; self is this program,
	// which runs the store operations there (the s3 subcommand) when at
	// is not the host.
	at   place
	self string
}

// store connects a cos.S3 to s (path-style).
func (s *s3Store) store(ctx context.Context) (*cos.S3, error) {
	return cos.NewS3(ctx, cos.S3Config{Endpoint: s.Endpoint, Region: s.Region, Addressing: "path",
		AccessKey: s.AccessKey, SecretKey: s.SecretKey})
}

// weedServer is a SeaweedFS server the driver started: in its own process
// (on the host) or through a `chutebench weed` helper in a namespace.
type weedServer struct {
	s3Store
	weed   *s3test.Weed // on the host
	helper *service     // in a namespace
}

func (w *weedServer) stop() {
	if w == nil {
		return
	}
	if w.weed != nil {
		w.weed.Close()
	}
	if w.helper != nil {
		w.helper.stop(15 * time.Second)
	}
}

// startWeedHere starts SeaweedFS in this process's network, on loopback.
func startWeedHere(ctx context.Context, bin, dir string) (*weedServer, error) {
	os.RemoveAll(dir)
	log, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	w, err := s3test.StartWeed(ctx, s3test.Options{Binary: bin, Dir: dir, Log: log})
	if err != nil {
		return nil, err
	}
	return &weedServer{weed: w, s3Store: s3Store{Endpoint: w.Endpoint, Region: w.Region,
		AccessKey: w.AccessKey, SecretKey: w.SecretKey, PID: w.PID()}}, nil
}

// startWeedIn starts SeaweedFS bound to ip inside p, through this
// program's weed subcommand.
func startWeedIn(ctx context.Context, p place, self, bin, dir, ip string) (*weedServer, error) {
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	readyFile := dir + ".ready.json"
	os.Remove(readyFile)
	ready := func() error {
		_, err := os.Stat(readyFile)
		return err
	}
	svc, err := startService(ctx, p, toolEnv(), dir+".log", ready, 3*time.Minute, self,
		"weed", "--binary", bin, "--dir", dir, "--bind", ip, "--ready-file", readyFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(readyFile)
	if err != nil {
		svc.stop(10 * time.Second)
		return nil, err
	}
	w := &weedServer{helper: svc}
	if err := json.Unmarshal(b, &w.s3Store); err != nil {
		svc.stop(10 * time.Second)
		return nil, err
	}
	return w, nil
}

// runWeedHelper is the weed subcommand: start SeaweedFS here (the helper
// runs inside a namespace), describe it in a ready file, and stop it on
// SIGTERM or SIGINT.
func runWeedHelper(args []string) error {
	var bin, dir, bind, readyFile string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--binary":
			bin = args[i+1]
		case "--dir":
			dir = args[i+1]
		case "--bind":
			bind = args[i+1]
		case "--ready-file":
			readyFile = args[i+1]
		default:
			return fmt.Errorf("weed: unknown flag %s", args[i])
		}
	}
	if bin == "" || dir == "" || readyFile == "" {
		return errors.New("weed: needs --binary, --dir and --ready-file")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	w, err := s3test.StartWeed(ctx, s3test.Options{Binary: bin, Dir: dir, BindIP: bind, Log: os.Stderr, StartTimeout: 150 * time.Second})
	if err != nil {
		return err
	}
	defer w.Close()
	desc := s3Store{Endpoint: w.Endpoint, Region: w.Region, AccessKey: w.AccessKey, SecretKey: w.SecretKey, PID: w.PID()}
	b, _ := json.Marshal(desc)
	if err := os.WriteFile(readyFile+".tmp", b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(readyFile+".tmp", readyFile); err != nil {
		return err
	}
	<-ctx.Done()
	os.Remove(readyFile)
	return nil
}

// createBucket makes bucket on s (an existing one is fine).
func (s *s3Store) createBucket(ctx context.Context, bucket string) error {
	_, err := s.op(ctx, "mkbucket", bucket)
	return err
}

// putFile uploads a local file to bucket/key through the store library
// (multipart, beside the endpoint: for reference objects).
func (s *s3Store) putFile(ctx context.Context, bucket, key, file string) error {
	_, err := s.op(ctx, "put", bucket, key, file)
	return err
}

// deleteObject removes bucket/key.
func (s *s3Store) deleteObject(ctx context.Context, bucket, key string) error {
	_, err := s.op(ctx, "delete", bucket, key)
	return err
}

// objectSize returns the size of bucket/key, or -1 if it is not there.
func (s *s3Store) objectSize(ctx context.Context, bucket, key string) int64 {
	n, err := s.op(ctx, "stat", bucket, key)
	if err != nil {
		return -1
	}
	return n
}

// countObjects counts the objects under prefix in bucket.
func (s *s3Store) countObjects(ctx context.Context, bucket, prefix string) (int, error) {
	n, err := s.op(ctx, "count", bucket, prefix)
	return int(n), err
}

// op runs a store operation where the endpoint is reachable: in this
// process on the host, else through the s3 subcommand inside s.at.
func (s *s3Store) op(ctx context.Context, op string, args ...string) (int64, error) {
	if s.at.netns == "" {
		return s3Op(ctx, s, op, args)
	}
	r := run(ctx, s.at, 10*time.Minute, toolEnv("CHUTEBENCH_S3="+s.encode()), s.self, append([]string{"s3", op}, args...)...)
	if r.Err != nil {
		return 0, r.Err
	}
	return strconv.ParseInt(strings.TrimSpace(string(r.Stdout)), 10, 64)
}

func (s *s3Store) encode() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// runS3Helper is the s3 subcommand: one store operation against the
// endpoint described by $CHUTEBENCH_S3; it prints a number.
func runS3Helper(args []string) error {
	var s s3Store
	if err := json.Unmarshal([]byte(os.Getenv("CHUTEBENCH_S3")), &s); err != nil {
		return fmt.Errorf("s3: CHUTEBENCH_S3: %w", err)
	}
	if len(args) < 1 {
		return errors.New("s3: which operation?")
	}
	n, err := s3Op(context.Background(), &s, args[0], args[1:])
	if err != nil {
		return err
	}
	fmt.Println(n)
	return nil
}

// s3Op performs op in this process.
func s3Op(ctx context.Context, s *s3Store, op string, args []string) (int64, error) {
	st, err := s.store(ctx)
	if err != nil {
		return 0, err
	}
	need := map[string]int{"mkbucket": 1, "put": 3, "stat": 2, "count": 2, "delete": 2}
	if n, ok := need[op]; !ok || len(args) != n {
		return 0, fmt.Errorf("s3: bad operation %s %q", op, args)
	}
	switch op {
	case "mkbucket":
		if err := st.CreateBucket(ctx, args[0]); err != nil && !errors.Is(err, cos.ErrExists) {
			return 0, err
		}
		return 0, nil
	case "put":
		f, err := os.Open(args[2])
		if err != nil {
			return 0, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		_, err = st.Put(ctx, args[0], args[1], f, fi.Size(), cos.Meta{Mtime: fi.ModTime(), Mode: 0o100644})
		return fi.Size(), err
	case "delete":
		return 0, st.Delete(ctx, args[0], args[1])
	case "stat":
		info, err := st.Stat(ctx, args[0], args[1])
		if err != nil {
			return 0, err
		}
		return info.Size, nil
	}
	n := int64(0)
	opt := cos.ListOptions{Prefix: args[1]}
	for {
		page, err := st.List(ctx, args[0], opt)
		if err != nil {
			return n, err
		}
		for _, o := range page.Objects {
			if !strings.HasSuffix(o.Key, "/") {
				n++
			}
		}
		if page.NextStartAfter == "" {
			return n, nil
		}
		opt.StartAfter = page.NextStartAfter
	}
}

// fillTree writes n small objects under prefix, spread over folders of
// perDir objects, with parallel writers: the bucket that the listing
// benchmarks walk.
func (s *s3Store) fillTree(ctx context.Context, bucket, prefix string, n, perDir, size int) error {
	st, err := s.store(ctx)
	if err != nil {
		return err
	}
	body := make([]byte, size)
	keys := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	now := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				_, err := st.Put(ctx, bucket, k, strings.NewReader(string(body)), int64(size), cos.Meta{Mtime: now, Mode: 0o100644})
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("put %s: %w", k, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		keys <- fmt.Sprintf("%sd%03d/f%05d", prefix, i/perDir, i)
	}
	close(keys)
	wg.Wait()
	return first
}

// curlPut uploads file to bucket/key with one signed HTTP PUT.
func (s *s3Store) curlPut(ctx context.Context, p place, timeout time.Duration, file, bucket, key string, size int64) measurement {
	m := newMeasurement("curl", "upload")
	url := s.Endpoint + "/" + bucket + "/" + key
	r := run(ctx, p, timeout, toolEnv(), "curl", s.curlArgs(timeout, "-T", file, url)...)
	s.curlFinish(&m, r, size, true)
	return m
}

// curlGet downloads bucket/key to file with one signed HTTP GET.
func (s *s3Store) curlGet(ctx context.Context, p place, timeout time.Duration, bucket, key, file string, size int64) measurement {
	m := newMeasurement("curl", "download")
	url := s.Endpoint + "/" + bucket + "/" + key
	r := run(ctx, p, timeout, toolEnv(), "curl", s.curlArgs(timeout, "-o", file, url)...)
	s.curlFinish(&m, r, size, false)
	return m
}

func (s *s3Store) curlArgs(timeout time.Duration, rest ...string) []string {
	args := []string{"-sS", "--fail", "--noproxy", "*",
		"--aws-sigv4", "aws:amz:" + s.Region + ":s3", "-u", s.AccessKey + ":" + s.SecretKey,
		"-w", "%{size_upload} %{size_download} %{time_total} %{http_code}\n"}
	if timeout > 0 {
		// curl stops itself a little before the driver would, so that it
		// still reports how far it got.
		args = append(args, "--max-time", strconv.FormatFloat(max(timeout.Seconds()-2, 1), 'f', 0, 64))
	}
	return append(args, rest...)
}

// curlFinish reads curl's -w line.
func (s *s3Store) curlFinish(m *measurement, r runResult, size int64, up bool) {
	m.Seconds = r.Wall.Seconds()
	m.ClientCPU = r.CPU.Seconds()
	f := strings.Fields(lastLines(r.Stdout, 1))
	var moved float64
	if len(f) >= 4 {
		if up {
			moved, _ = strconv.ParseFloat(f[0], 64)
		} else {
			moved, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	m.Bytes = size
	// Exit status 28 is curl's own timeout.
	timedOut := r.TimedOut || strings.Contains(string(r.Stderr), "Operation timed out")
	if timedOut {
		m.TimedOut = true
		m.Partial = true
		m.Bytes = int64(moved)
	} else if r.Err != nil {
		m.Error = r.Err.Error()
	} else if int64(moved) != size {
		m.Error = fmt.Sprintf("curl moved %d bytes, want %d", int64(moved), size)
	}
	m.setRate()
}

// rcloneEnv configures a remote called "weed" for s through rclone's
// environment variables (no config file).
func (s *s3Store) rcloneEnv(scratch string) []string {
	return toolEnv(
		"RCLONE_CONFIG="+filepath.Join(scratch, "rclone.conf"),
		"RCLONE_CONFIG_WEED_TYPE=s3",
		"RCLONE_CONFIG_WEED_PROVIDER=SeaweedFS",
		"RCLONE_CONFIG_WEED_ENDPOINT="+s.Endpoint,
		"RCLONE_CONFIG_WEED_REGION="+s.Region,
		"RCLONE_CONFIG_WEED_ACCESS_KEY_ID="+s.AccessKey,
		"RCLONE_CONFIG_WEED_SECRET_ACCESS_KEY="+s.SecretKey,
	)
}

// rcloneCopy runs `rclone copyto` (rclone copy of one file under a chosen
// name) with rclone's defaults: multipart uploads of 5 MiB parts, four at
// once; downloads above 250 MiB in four parallel streams.
func (s *s3Store) rcloneCopy(ctx context.Context, p place, timeout time.Duration, scratch string, up bool, local, bucket, key string, size int64) measurement {
	op := "download"
	src, dst := "weed:"+bucket+"/"+key, local
	if up {
		op = "upload"
		src, dst = local, "weed:"+bucket+"/"+key
	}
	m := newMeasurement("rclone", op)
	os.WriteFile(filepath.Join(scratch, "rclone.conf"), nil, 0o600)
	r := run(ctx, p, timeout, s.rcloneEnv(scratch), "rclone", "copyto", "--retries", "1", "--s3-no-check-bucket", src, dst)
	m.Seconds = r.Wall.Seconds()
	m.ClientCPU = r.CPU.Seconds()
	m.Bytes = size
	m.fail(r)
	m.setRate()
	return m
}
