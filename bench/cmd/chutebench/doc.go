package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// updateDoc rewrites the generated sections of BENCHMARKS.md ("local",
// "wan", "fair") from the latest results; the text around them is left
// alone.
func updateDoc(cfg config) error {
	docPath := cfg.path("CHUTE_BENCH_DOC")
	results := cfg.path("CHUTE_BENCH_RESULTS")
	b, err := os.ReadFile(docPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc := string(b)
	rel := func(p string) string {
		r, err := filepath.Rel(filepath.Dir(docPath), p)
		if err != nil {
			return p
		}
		return filepath.ToSlash(r)
	}
	var local localReport
	if ok, err := readJSON(filepath.Join(results, "bench-latest.json"), &local); err != nil {
		return err
	} else if ok {
		body := "Latest `make bench` run (" + rel(filepath.Join(results, "bench-latest.md")) + "):\n\n" + metaSection(local.Meta) + "\n" +
			localBody(&local, "###")
		doc = replaceSection(doc, "local", body)
	}
	var wan wanReport
	if ok, err := readJSON(filepath.Join(results, "wan-latest.json"), &wan); err != nil {
		return err
	} else if ok {
		body := fmt.Sprintf("Latest `make bench-wan` run (%s):\n\n![goodput against RTT and loss](%s)\n\n",
			rel(filepath.Join(results, "wan-latest.md")), rel(filepath.Join(results, "wan-latest.svg"))) +
			metaSection(wan.Meta) + "\n" + wanBody(&wan, "###")
		doc = replaceSection(doc, "wan", body)
	}
	var fair fairReport
	if ok, err := readJSON(filepath.Join(results, "fair-latest.json"), &fair); err != nil {
		return err
	} else if ok {
		body := fmt.Sprintf("Latest fairness run (%s):\n\n![chute and TCP sharing the bottleneck](%s)\n\n",
			rel(filepath.Join(results, "fair-latest.md")), rel(filepath.Join(results, "fair-latest.svg"))) +
			metaSection(fair.Meta) + "\n" + fairBody(&fair, "###")
		doc = replaceSection(doc, "fair", body)
	}
	if strings.TrimSpace(doc) == "" {
		return nil
	}
	return os.WriteFile(docPath, []byte(doc), 0o644)
}

// readJSON reads path into v; a missing file is not an error (ok false).
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}
