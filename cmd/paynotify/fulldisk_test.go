package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify/sqlite"
)

// TestBinary_SQLiteFullDisk: the real binary on SQLite in a small tmpfs (mounted by the test: it
// needs root, which CI has) that is then filled to the last byte. While it is full every
// notification is answered with a failure and nothing acknowledged is lost, reads (an order, the
// events) keep working; once space returns the provider's retries are acknowledged and applied
// by the same process; after a kill -9, PRAGMA integrity_check is ok and every acknowledged
// notification is a paid order with one order.paid event.
func TestBinary_SQLiteFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("mounting a tmpfs needs root, and CI runs this test (.ci/run runs as root)")
		}
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	const (
		n     = 600
		first = 100 // acknowledged before the disk fills
	)
	bin := buildBinary(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	dsn := "sqlite:" + filepath.Join(mnt, "data", "paynotify.db")
	if err := os.Mkdir(filepath.Join(mnt, "data"), 0o700); err != nil {
		t.Fatal(err)
	}

	key := lkAlipayKey(t)
	bodies := make([][]byte, n)
	lkParallel(n, runtime.GOMAXPROCS(0), func(i int) { bodies[i] = lkSignAlipay(t, key, lkNotification(i)) })
	ctx := context.Background()
	lkSeed(t, dsn, n, nil)

	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, dsn)
	cmd := startBinary(t, bin, config, addr)
	base := "http://" + addr
	target := base + "/notify/alipay/shop"
	hc := &http.Client{Timeout: 30 * time.Second}
	acked := make([]bool, n)
	post := func(i int) string {
		code, text, err := lkPost(hc, target, bodies[i])
		switch {
		case err != nil:
			return "error: " + err.Error()
		case code == http.StatusOK && text == "success":
			acked[i] = true
			return "success"
		}
		return fmt.Sprintf("%d %q", code, text)
	}
	for i := 0; i < first; i++ {
		if a := post(i); a != "success" {
			t.Fatalf("%s before the disk filled: %s", lkTradeNo(i), a)
		}
	}

	// Empty the WAL (a checkpoint that truncates it, through a connection of the test's own,
	// the server idle), then fill the disk to the last byte: no commit has room left. (With a
	// WAL that still has room from earlier commits, SQLite reuses it and commits go on, durably,
	// on a full disk: a first run of this test acknowledged 27 before the WAL was used up, all
	// of them found paid after the kill.)
	db, err := sqlite.Open(filepath.Join(mnt, "data", "paynotify.db"))
	if err != nil {
		t.Fatal(err)
	}
	var busy, logPages, done int
	if err := db.SQL().QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &done); err != nil || busy != 0 {
		t.Fatalf("wal_checkpoint(TRUNCATE): busy %d, %v", busy, err)
	}
	db.Close()
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	var okFull, failFull int
	for i := first; i < n; i++ {
		if post(i) == "success" {
			okFull++
		} else {
			failFull++
		}
	}
	t.Logf("disk full: %d notifications acknowledged, %d answered with a failure", okFull, failFull)
	if okFull > 0 {
		t.Errorf("%d notifications acknowledged on a full disk, want none", okFull)
	}
	// Reads work.
	code, o := binAPI(t, "GET", base+"/v1/orders/shop/"+lkTradeNo(0), nil)
	if code != http.StatusOK || o["status"] != "paid" {
		t.Errorf("GET an order on a full disk: %d %v", code, o)
	}
	code, ev := binAPI(t, "GET", base+"/v1/events?limit=500", nil)
	if evs, _ := ev["events"].([]any); code != http.StatusOK || len(evs) != first {
		t.Errorf("GET /v1/events on a full disk: %d, %d events, want %d", code, len(evs), first)
	}

	// Space returns: the retries go through, same process.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := first; i < n; i++ {
		if a := post(i); a != "success" {
			t.Errorf("retry of %s with space back: %s", lkTradeNo(i), a)
		}
	}
	var killed atomic.Bool
	go func() {
		// More writes in flight at the kill.
		for i := 0; i < n && !killed.Load(); i++ {
			lkPost(hc, target, bodies[i])
		}
	}()
	time.Sleep(50 * time.Millisecond)
	killed.Store(true)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	db, err = sqlite.Open(filepath.Join(mnt, "data", "paynotify.db"))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.SQL().QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check after kill -9: %q %v", check, err)
	}
	db.Close()
	lkCheckOrders(t, dsn, n, func(i int) string {
		if acked[i] {
			return "paid"
		}
		return "either"
	}, "after the kill")
}

// fill writes path until the file system is full: big writes, then ever smaller ones down to a
// byte, so that no block is left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for size := len(buf); size >= 1; size /= 2 {
		for {
			if _, err := f.Write(buf[:size]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill: %v", err)
				}
				break
			}
		}
	}
	f.Sync()
}
