// reforigin: a minimal reference LL-HLS origin, the yardstick of bench/edge_viewers.py.
//
// It mirrors one rendition of a running edge (one upstream viewer: a blocking reload for
// the next part, the same playlist as a delta update, then the part) and serves what it
// mirrored to the viewer simulator the way the edge does: blocking playlist reloads
// (_HLS_msn/_HLS_part, held until the part is there, 503 after three seconds), delta
// updates (_HLS_skip), parts, and the multivariant playlist fetched once. Go's net/http
// server, no framework: what a small compiled origin costs per request on the same
// simulator and the same core, so the edge's CPU per request is reported as a ratio that
// travels between machines. The same stream's bytes as the edge serves, fetched over
// loopback (20 requests/s upstream, whatever the number of viewers).
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

var hintRE = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"`)

type position struct{ msn, part int }

func (a position) before(b position) bool {
	return a.msn < b.msn || (a.msn == b.msn && a.part < b.part)
}

// state is what viewers are served: replaced whole on every new part.
type state struct {
	full, delta []byte
	hint        position      // the next part: every part before it is listed and kept
	changed     chan struct{} // closed when the next state is published
}

type origin struct {
	mu      sync.Mutex
	cur     *state
	parts   map[position][]byte
	order   []position
	variant []byte
}

func (o *origin) snapshot() *state {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cur
}

func (o *origin) publish(full, delta []byte, hint, got position, part []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.parts[got] = part
	o.order = append(o.order, got)
	if len(o.order) > 200 {
		delete(o.parts, o.order[0])
		o.order = o.order[1:]
	}
	old := o.cur
	o.cur = &state{full: full, delta: delta, hint: hint, changed: make(chan struct{})}
	close(old.changed)
}

func fetch(client *http.Client, url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %d", url, resp.StatusCode)
	}
	return body, nil
}

func hintOf(body []byte) (position, bool) {
	m := hintRE.FindSubmatch(body)
	if m == nil {
		return position{}, false
	}
	msn, _ := strconv.Atoi(string(m[1]))
	part, _ := strconv.Atoi(string(m[2]))
	return position{msn, part}, true
}

// mirror follows the upstream rendition for ever: reload for the next part, then its
// delta update and its bytes, then publish (so a listed part is always servable).
func (o *origin) mirror(client *http.Client, upstream string) {
	for {
		body, err := fetch(client, upstream+"index.m3u8")
		if err != nil {
			fmt.Fprintln(os.Stderr, "reforigin:", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		next, ok := hintOf(body)
		for ok {
			q := fmt.Sprintf("%sindex.m3u8?_HLS_msn=%d&_HLS_part=%d", upstream, next.msn, next.part)
			full, err := fetch(client, q)
			if err != nil {
				break
			}
			delta, err := fetch(client, q+"&_HLS_skip=YES")
			if err != nil {
				break
			}
			part, err := fetch(client, fmt.Sprintf("%s%d.%d.m4s", upstream, next.msn, next.part))
			if err != nil {
				break
			}
			after, found := hintOf(full)
			if !found || !next.before(after) {
				break
			}
			o.publish(full, delta, after, next, part)
			next = after
		}
	}
}

func number(q string) (int, bool) {
	if q == "" || len(q) > 18 {
		return 0, false
	}
	n, err := strconv.Atoi(q)
	return n, err == nil && n >= 0
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	h := w.Header()
	switch {
	case strings.HasSuffix(path, "/index.m3u8"):
		q := r.URL.Query()
		s := o.snapshot()
		if msnText := q.Get("_HLS_msn"); msnText != "" {
			msn, ok1 := number(msnText)
			part, ok2 := 0, true
			if p := q.Get("_HLS_part"); p != "" {
				part, ok2 = number(p)
			}
			if !ok1 || !ok2 {
				http.Error(w, "bad _HLS_msn/_HLS_part", http.StatusBadRequest)
				return
			}
			want := position{msn, part}
			deadline := time.NewTimer(3 * time.Second)
			for !want.before(s.hint) {
				select {
				case <-s.changed:
					s = o.snapshot()
				case <-deadline.C:
					http.Error(w, "part did not arrive in time", http.StatusServiceUnavailable)
					return
				}
			}
			deadline.Stop()
		}
		body := s.full
		if q.Get("_HLS_skip") != "" {
			body = s.delta
		}
		h["Content-Type"] = []string{"application/vnd.apple.mpegurl"}
		h["Cache-Control"] = []string{"no-cache"}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.Write(body)
	case strings.HasSuffix(path, ".m4s"):
		name := path[strings.LastIndexByte(path, '/')+1 : len(path)-4]
		dot := strings.IndexByte(name, '.')
		if dot < 0 {
			http.NotFound(w, r)
			return
		}
		msn, ok1 := number(name[:dot])
		part, ok2 := number(name[dot+1:])
		o.mu.Lock()
		data, found := o.parts[position{msn, part}]
		o.mu.Unlock()
		if !ok1 || !ok2 || !found {
			http.NotFound(w, r)
			return
		}
		h["Content-Type"] = []string{"video/mp4"}
		h["Cache-Control"] = []string{"public, max-age=30"}
		h["Content-Length"] = []string{strconv.Itoa(len(data))}
		w.Write(data)
	case strings.HasSuffix(path, ".m3u8"):
		h["Content-Type"] = []string{"application/vnd.apple.mpegurl"}
		h["Content-Length"] = []string{strconv.Itoa(len(o.variant))}
		w.Write(o.variant)
	default:
		http.NotFound(w, r)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on (loopback)")
	upstream := flag.String("upstream", "", "the edge's rendition URL ending in /, e.g. http://127.0.0.1:8080/live/demo/360p/")
	flag.Parse()
	if !strings.HasPrefix(*upstream, "http://127.") || !strings.HasSuffix(*upstream, "/") {
		fmt.Fprintln(os.Stderr, "reforigin: -upstream http://127.x.x.x:port/live/stream/rendition/ is required (loopback only)")
		os.Exit(64)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	rendition := strings.TrimSuffix(*upstream, "/")
	stream := rendition[:strings.LastIndexByte(rendition, '/')]
	o := &origin{parts: map[position][]byte{}, cur: &state{changed: make(chan struct{})}}
	var err error
	for i := 0; i < 100; i++ {
		if o.variant, err = fetch(client, stream+".m3u8"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reforigin: multivariant playlist:", err)
		os.Exit(1)
	}
	go o.mirror(client, *upstream)
	for o.snapshot().full == nil {
		time.Sleep(20 * time.Millisecond)
	}
	srv := &http.Server{Addr: *listen, Handler: o, ReadHeaderTimeout: 10 * time.Second}
	fmt.Println("ready")
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "reforigin:", err)
		os.Exit(1)
	}
}
