// viewersim: LL-HLS viewers that behave like hls.js in low-latency mode, for load tests.
//
// Each viewer loads the media playlist, then loops: a blocking playlist reload for the
// next part (_HLS_msn/_HLS_part from the preload hint), then a request for that part.
// With -skip the reloads ask for delta updates (_HLS_skip=YES) once the playlist offers
// them (EXT-X-SERVER-CONTROL CAN-SKIP-UNTIL), as hls.js does; with -sessions a viewer
// starts from the multivariant playlist and keeps its hls_ctx in every media playlist
// URL. Query parameters come in hls.js's order: the URL's own (hls_ctx) first, then the
// delivery directives it appends (_HLS_msn, _HLS_part, _HLS_skip).
// It prints one line per received part, "msn part unix_nanoseconds", for the driver to
// join with the times the parts became available, and a JSON summary on stderr.
//
// Go rather than Python: a Python client saturates near 4,000 requests/s per core here,
// and 1,000 viewers at 100 ms parts make 20,000 requests/s. And raw HTTP/1.1 on one
// keep-alive connection per viewer rather than net/http: measured, net/http's client
// saturated its core at ~20,000 requests/s, before the edge did.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type sample struct {
	msn, part int
	at        int64
}

type counters struct {
	requests, errors, playlistErrors, partErrors, resyncs, deltas atomic.Int64
}

type conn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	cmcd string // "CMCD=..." added to every request, or ""
}

// get sends one GET on the viewer's keep-alive connection (reconnecting when needed)
// and reads the whole response; our server always sends Content-Length.
func (k *conn) get(path string, c *counters) (int, []byte, error) {
	c.requests.Add(1)
	if k.cmcd != "" {
		// CMCD (CTA-5004) in the query, last, as hls.js sends it: the session id only.
		if strings.Contains(path, "?") {
			path += "&" + k.cmcd
		} else {
			path += "?" + k.cmcd
		}
	}
	for attempt := 0; attempt < 2; attempt++ {
		if k.c == nil {
			nc, err := net.DialTimeout("tcp", k.addr, 5*time.Second)
			if err != nil {
				return 0, nil, err
			}
			k.c, k.r = nc, bufio.NewReaderSize(nc, 16384)
		}
		k.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(k.c, "GET "+path+" HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
			k.c.Close()
			k.c = nil
			continue
		}
		status, body, err := readResponse(k.r)
		if err != nil {
			k.c.Close()
			k.c = nil
			if attempt == 0 {
				continue
			}
			return 0, nil, err
		}
		return status, body, nil
	}
	return 0, nil, fmt.Errorf("connection lost")
}

func readResponse(r *bufio.Reader) (int, []byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, err
	}
	length := -1
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && (h[0] == 'c' || h[0] == 'C') && strings.EqualFold(string(h[:15]), "content-length:") {
			length, err = strconv.Atoi(strings.TrimSpace(string(h[15:])))
			if err != nil {
				return 0, nil, err
			}
		}
	}
	if length < 0 {
		return 0, nil, fmt.Errorf("no content-length")
	}
	body := make([]byte, length)
	_, err = io.ReadFull(r, body)
	return status, body, err
}

func main() {
	base := flag.String("base", "", "rendition URL ending in /, e.g. http://127.0.0.1:8080/live/s/360p/")
	viewers := flag.Int("viewers", 100, "concurrent viewers")
	duration := flag.Duration("duration", 15*time.Second, "how long to run")
	ramp := flag.Duration("ramp", 2*time.Second, "spread viewer starts over this long")
	warmup := flag.Duration("warmup", 2*time.Second, "do not record samples during this long")
	sessions := flag.Bool("sessions", false, "start from the multivariant playlist and send its hls_ctx, as players do")
	cmcdPrefix := flag.String("cmcd-sid-prefix", "", "send CMCD sid=\"PREFIX%08d\" (the viewer's index) on every request; the same prefix in several runs is the same viewers on several streams")
	skip := flag.Bool("skip", false, "ask for delta updates (_HLS_skip=YES) when the playlist offers them, as hls.js does")
	flag.Parse()
	u, err := url.Parse(*base)
	if *base == "" || err != nil || u.Scheme != "http" {
		fmt.Fprintln(os.Stderr, "viewersim: -base http://host:port/live/stream/rendition/ is required")
		os.Exit(64)
	}
	start := time.Now()
	recordFrom := start.Add(*ramp + *warmup)
	end := start.Add(*ramp + *warmup + *duration)
	var mu sync.Mutex
	var samples []sample
	var c counters
	var wg sync.WaitGroup
	for i := 0; i < *viewers; i++ {
		wg.Add(1)
		delay := time.Duration(int64(*ramp) * int64(i) / int64(max(*viewers, 1)))
		go func() {
			defer wg.Done()
			time.Sleep(delay)
			k := &conn{addr: u.Host}
			if *cmcdPrefix != "" {
				k.cmcd = "CMCD=" + url.QueryEscape(fmt.Sprintf("sid=\"%s%08d\"", *cmcdPrefix, i))
			}
			ctx := ""
			if *sessions {
				ctx = session(k, u.Path, &c)
			}
			local := viewer(k, u.Path, ctx, *skip, end, recordFrom, &c)
			if k.c != nil {
				k.c.Close()
			}
			mu.Lock()
			samples = append(samples, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	for _, s := range samples {
		fmt.Fprintf(out, "%d %d %d\n", s.msn, s.part, s.at)
	}
	out.Flush()
	summary := map[string]any{
		"viewers": *viewers, "requests": c.requests.Load(), "errors": c.errors.Load(),
		"playlist_errors": c.playlistErrors.Load(), "part_errors": c.partErrors.Load(),
		"resyncs": c.resyncs.Load(), "delta_playlists": c.deltas.Load(), "samples": len(samples),
		"seconds": time.Since(start).Seconds(),
	}
	json.NewEncoder(os.Stderr).Encode(summary)
}

var hintTag = []byte(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`)

// hint reads the preload hint's part (msn, part) from "...URI="{msn}.{part}.m4s"".
// By hand rather than a regexp: at 1,500 viewers the simulator reads 15,000 playlists a
// second, in bursts as the edge releases them, and must not be the slower side.
func hint(body []byte) (int, int, bool) {
	i := bytes.LastIndex(body, hintTag)
	if i < 0 {
		return 0, 0, false
	}
	rest := body[i+len(hintTag):]
	msn, n := digits(rest)
	if n == 0 || n >= len(rest) || rest[n] != '.' {
		return 0, 0, false
	}
	rest = rest[n+1:]
	part, m := digits(rest)
	if m == 0 || !bytes.HasPrefix(rest[m:], []byte(`.m4s"`)) {
		return 0, 0, false
	}
	return msn, part, true
}

func digits(b []byte) (int, int) {
	v, n := 0, 0
	for n < len(b) && n < 18 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int(b[n]-'0')
		n++
	}
	return v, n
}

var ctxRE = regexp.MustCompile(`hls_ctx=([A-Za-z0-9_-]{16})`)

// session asks the multivariant playlist (/live/{stream}.m3u8) for a viewer id.
func session(k *conn, base string, c *counters) string {
	rendition := strings.TrimSuffix(base, "/")
	stream := rendition[:strings.LastIndex(rendition, "/")]
	status, body, err := k.get(stream+".m3u8", c)
	if err != nil || status != 200 {
		c.errors.Add(1)
		return ""
	}
	if m := ctxRE.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

var skipRE = regexp.MustCompile(`#EXT-X-SERVER-CONTROL:[^\n]*CAN-SKIP-UNTIL=`)

func viewer(k *conn, base, ctx string, skip bool, end, recordFrom time.Time, c *counters) []sample {
	playlist := base + "index.m3u8"
	sep := "?"
	if ctx != "" {
		playlist += "?hls_ctx=" + ctx
		sep = "&"
	}
	var out []sample
	msn, part, ok := -1, -1, false
	canSkip := false
	for time.Now().Before(end) {
		if !ok {
			status, body, err := k.get(playlist, c)
			if err != nil || status != 200 {
				c.errors.Add(1)
				c.playlistErrors.Add(1)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			canSkip = skip && skipRE.Match(body)
			if msn, part, ok = hint(body); !ok {
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		// The blocking reload: held by the edge until part (msn, part) exists.
		reload := fmt.Sprintf("%s%s_HLS_msn=%d&_HLS_part=%d", playlist, sep, msn, part)
		if canSkip {
			reload += "&_HLS_skip=YES"
		}
		status, body, err := k.get(reload, c)
		if err != nil || status != 200 {
			c.errors.Add(1)
			c.playlistErrors.Add(1)
			ok = false
			continue
		}
		if canSkip && bytes.Contains(body, []byte("#EXT-X-SKIP:")) {
			c.deltas.Add(1)
		}
		status, _, err = k.get(fmt.Sprintf("%s%d.%d.m4s", base, msn, part), c)
		now := time.Now()
		if err != nil || status != 200 {
			c.errors.Add(1)
			c.partErrors.Add(1)
			ok = false
			continue
		}
		if now.After(recordFrom) && now.Before(end) {
			out = append(out, sample{msn, part, now.UnixNano()})
		}
		next, nextPart, found := hint(body)
		if !found {
			c.resyncs.Add(1)
			ok = false
			continue
		}
		if next == msn && nextPart == part {
			// The playlist we got already lists (msn, part): the hint is its successor.
			ok = false
			continue
		}
		msn, part = next, nextPart
	}
	return out
}
