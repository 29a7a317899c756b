package main

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/paynotify/paynotify/sandbox"
)

// TestBinary_CreatePaidAlready: orders created through the API and paid at the sandbox, whose
// notifications never came, are lost from the database (as by a restore from an older backup).
// Created again, the sandbox refuses the precreate (ACQ.TRADE_HAS_SUCCESS) and the prepay
// (ORDERPAID): each order is stored anyway, without pay parameters, and queried at once, paid by
// the verified payment; the create is answered 409 conflict with the provider's code and the
// order (that payment is not necessarily the new request's buyer's), and so is the same request
// once more. It was 422 with nothing stored.
func TestBinary_CreatePaidAlready(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "paynotify.db")
	sb := newTestSandbox(t, 1)
	if err := sb.SetFaults("", sandbox.Faults{NeverNotify: true}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startBinary(t, bin, writeSandboxConfig(t, dir, addr, "sqlite:"+path, sb, "", ""), addr)
	base := "http://" + addr

	orders := []testOrder{{app: "alipay-demo", otn: "LOST0001", channel: "alipay.precreate"}, {app: "wechatpay-demo", otn: "LOST0002", channel: "wechatpay.native"}}
	create := func(o testOrder) (int, map[string]any) {
		return binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": o.app, "out_trade_no": o.otn, "amount": 100, "subject": "s", "channel": o.channel})
	}
	for _, o := range orders {
		code, body := create(o)
		if code != http.StatusCreated {
			t.Fatalf("create %s: %d %v", o.otn, code, body)
		}
		pay, _ := body["pay"].(map[string]any)
		url, _ := pay["qr_code"].(string)
		if url == "" {
			url, _ = pay["code_url"].(string)
		}
		if _, err := sb.Act("pay", sandbox.ActionRequest{URL: url}); err != nil {
			t.Fatalf("pay %s: %v", o.otn, err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`PRAGMA busy_timeout = 5000`); err != nil {
		t.Fatal(err)
	}
	if res, err := db.Exec(`DELETE FROM orders WHERE out_trade_no IN ('LOST0001', 'LOST0002')`); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("deleted %d orders, want 2", n)
	}

	for i, o := range orders {
		providerCode := []string{"ACQ.TRADE_HAS_SUCCESS", "ORDERPAID"}[i]
		for _, when := range []string{"again after it was paid and lost", "the same request once more"} {
			code, body := create(o)
			e, _ := body["error"].(map[string]any)
			stored, _ := body["order"].(map[string]any)
			if code != http.StatusConflict || e["code"] != "conflict" || e["provider_code"] != providerCode ||
				stored["status"] != "paid" || stored["provider_trade_no"] == "" || stored["pay"] != nil {
				t.Fatalf("create %s %s: %d %v; want 409 conflict (%s) with the order, paid by the query, no pay", o.otn, when, code, body, providerCode)
			}
		}
		if code, body := binAPI(t, "GET", base+"/v1/orders/"+o.app+"/"+o.otn, nil); code != http.StatusOK || body["status"] != "paid" {
			t.Fatalf("get %s: %d %v; want the paid order", o.otn, code, body)
		}
	}
}
