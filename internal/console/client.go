package console

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// NoDaemonError says that nothing answered on the control socket.
type NoDaemonError struct {
	Socket string
	Err    error
}

func (e *NoDaemonError) Error() string {
	reason := e.Err.Error()
	hint := `is "isp-box serve" running?`
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		reason = errno.Error()
		if errno == syscall.EACCES || errno == syscall.EPERM {
			hint = "is this user in the daemon's group? the packaged service's group is isp-box: sudo usermod -aG isp-box $USER, then log in again"
		}
	}
	return fmt.Sprintf("no daemon at %s: %s (%s)", e.Socket, reason, hint)
}

func (e *NoDaemonError) Unwrap() error { return e.Err }

// Client talks to a daemon over its control socket. It is safe for
// concurrent use; it connects on each call.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path ("" means
// ClientSocketPath()). It does not connect yet.
func NewClient(path string) *Client {
	if path == "" {
		path = ClientSocketPath()
	}
	c := &Client{socket: path}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, &NoDaemonError{Socket: path, Err: err}
			}
			return conn, nil
		},
		DisableCompression: true,
	}}
	return c
}

// Dial returns a client after checking that a daemon answers at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	c := NewClient(path)
	if _, err := c.Version(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Socket is the path the client connects to.
func (c *Client) Socket() string { return c.socket }

// base is the URL host of every request; the transport ignores it.
const base = "http://isp-box"

// do sends a request and returns the response of a 2xx status; other
// statuses become errors carrying the daemon's message. A dial failure is
// returned as *NoDaemonError, unwrapped from net/http's wrapping.
func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var nd *NoDaemonError
		if errors.As(err, &nd) {
			return nil, nd
		}
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var ae apiError
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &ae) != nil || ae.Error == "" {
			ae.Error = strings.TrimSpace(string(body))
		}
		return nil, &APIError{Status: resp.StatusCode, Msg: ae.Error}
	}
	return resp, nil
}

// APIError is an error answer of the daemon.
type APIError struct {
	Status int    // HTTP status
	Msg    string // the daemon's message
}

func (e *APIError) Error() string { return e.Msg }

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", path, err)
	}
	return nil
}

// Status fetches the daemon's Status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.getJSON(ctx, "/v1/status", &st)
	return st, err
}

// Version fetches the daemon's VersionInfo.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.getJSON(ctx, "/v1/version", &v)
	return v, err
}

// History fetches up to limit of the newest call and session records
// (limit <= 0: the daemon's default, DefaultHistory).
func (c *Client) History(ctx context.Context, limit int) (History, error) {
	path := "/v1/history"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var h History
	err := c.getJSON(ctx, path, &h)
	return h, err
}

// Reload asks the daemon to re-read its config. The error carries the
// daemon's reason when it refused (e.g. the config's problems).
func (c *Client) Reload(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/reload")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Unban lifts the ban on a SIP source address (write access).
func (c *Client) Unban(ctx context.Context, addr string) (UnbanResult, error) {
	var r UnbanResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/unban?addr="+url.QueryEscape(addr))
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&r)
	return r, err
}

// EventStream calls fn for each line of /v1/events until ctx is done (it
// then returns nil), fn returns an error, or the daemon ends the stream
// (io.ErrUnexpectedEOF). kinds, if any, are Kind prefixes to keep.
func (c *Client) EventStream(ctx context.Context, kinds []string, fn func(EventLine) error) error {
	path := "/v1/events"
	if len(kinds) > 0 {
		path += "?kind=" + strings.Join(kinds, ",")
	}
	resp, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l EventLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream from %s: %w", c.socket, err)
	}
	return fmt.Errorf("event stream from %s: daemon closed it: %w", c.socket, io.ErrUnexpectedEOF)
}

// Events writes the live event stream to w as RenderEvent lines, like
// `asterisk -rvvv`, until ctx is done.
func (c *Client) Events(ctx context.Context, w io.Writer) error {
	return c.EventStream(ctx, nil, func(l EventLine) error { return RenderEvent(w, l) })
}
