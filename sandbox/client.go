package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to a running sandbox's control API (/sandbox/api/…). The CLI and the scenario
// runner use it; so can tests in other packages.
type Client struct {
	// BaseURL is where the sandbox is served, e.g. "http://127.0.0.1:8081" (the /sandbox/ prefix is
	// added by the client).
	BaseURL string
	// HTTPClient defaults to a client with a 70-second timeout (long-polls last up to a minute).
	HTTPClient *http.Client
}

func (c *Client) http() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return &http.Client{Timeout: 70 * time.Second}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+"/sandbox/api/"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("sandbox: %s", e.Error.Message)
		}
		return fmt.Errorf("sandbox: HTTP %d from %s", resp.StatusCode, path)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Keys returns the sandbox's Keys.
func (c *Client) Keys(ctx context.Context) (Keys, error) {
	var k Keys
	err := c.do(ctx, http.MethodGet, "keys", nil, &k)
	return k, err
}

// Act performs action ("open", "pay", "fail", "close", "finish", "refund") and returns the trade.
func (c *Client) Act(ctx context.Context, action string, req ActionRequest) (*Trade, error) {
	var out struct {
		Trade *Trade `json:"trade"`
	}
	err := c.do(ctx, http.MethodPost, action, req, &out)
	return out.Trade, err
}

// CompleteRefund completes a PROCESSING WeChat refund with status (SUCCESS, CLOSED, ABNORMAL).
func (c *Client) CompleteRefund(ctx context.Context, outTradeNo, outRefundNo, status string) error {
	return c.do(ctx, http.MethodPost, "refund/complete", ActionRequest{OutTradeNo: outTradeNo, OutRequestNo: outRefundNo, Status: status}, nil)
}

// Reset deletes every trade (outTradeNo "") or one trade's records.
func (c *Client) Reset(ctx context.Context, outTradeNo string) error {
	return c.do(ctx, http.MethodPost, "reset", ActionRequest{OutTradeNo: outTradeNo}, nil)
}

// Retry makes the pending notifications of outTradeNo ("" for all) due now.
func (c *Client) Retry(ctx context.Context, outTradeNo string) error {
	return c.do(ctx, http.MethodPost, "retry", ActionRequest{OutTradeNo: outTradeNo}, nil)
}

// SetFaults sets the faults of outTradeNo ("" for the global ones).
func (c *Client) SetFaults(ctx context.Context, outTradeNo string, f Faults) error {
	return c.do(ctx, http.MethodPut, "faults?out_trade_no="+url.QueryEscape(outTradeNo), f, nil)
}

// Trades lists trades (newest first), optionally for one out_trade_no.
func (c *Client) Trades(ctx context.Context, outTradeNo string) ([]*Trade, error) {
	var out struct {
		Trades []*Trade `json:"trades"`
	}
	err := c.do(ctx, http.MethodGet, "trades?out_trade_no="+url.QueryEscape(outTradeNo), nil, &out)
	return out.Trades, err
}

// Notifications lists the notifications of outTradeNo.
func (c *Client) Notifications(ctx context.Context, outTradeNo string) ([]*Notification, error) {
	var out struct {
		Notifications []*Notification `json:"notifications"`
	}
	err := c.do(ctx, http.MethodGet, "notifications?out_trade_no="+url.QueryEscape(outTradeNo), nil, &out)
	return out.Notifications, err
}

// Attempts lists attempts matching f. With wait > 0 it long-polls until at least minAttempts
// attempts (or, when minAcked > 0, minAcked acknowledged ones) exist; complete says whether that
// happened before wait ran out.
func (c *Client) Attempts(ctx context.Context, f AttemptFilter, minAttempts, minAcked int, wait time.Duration) (as []*Attempt, complete bool, err error) {
	q := url.Values{}
	q.Set("out_trade_no", f.OutTradeNo)
	q.Set("provider", f.Provider)
	q.Set("kind", f.Kind)
	q.Set("min", strconv.Itoa(minAttempts))
	q.Set("acked", strconv.Itoa(minAcked))
	q.Set("wait", wait.String())
	var out struct {
		Attempts []*Attempt `json:"attempts"`
		Complete bool       `json:"complete"`
	}
	err = c.do(ctx, http.MethodGet, "attempts?"+q.Encode(), nil, &out)
	return out.Attempts, out.Complete, err
}

// Queries lists the recorded query-type API calls matching f, oldest first (see
// Sandbox.Queries).
func (c *Client) Queries(ctx context.Context, f QueryFilter) ([]QueryRecord, error) {
	q := url.Values{}
	q.Set("provider", f.Provider)
	q.Set("api", f.API)
	q.Set("out_trade_no", f.OutTradeNo)
	var out struct {
		Queries []QueryRecord `json:"queries"`
	}
	err := c.do(ctx, http.MethodGet, "queries?"+q.Encode(), nil, &out)
	return out.Queries, err
}

// CreateOrder creates a trade directly in the sandbox (see Sandbox.CreateOrder).
func (c *Client) CreateOrder(ctx context.Context, o OrderRequest) (*Trade, error) {
	var out struct {
		Trade *Trade `json:"trade"`
	}
	err := c.do(ctx, http.MethodPost, "order", o, &out)
	return out.Trade, err
}
