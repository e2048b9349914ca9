// Package webclient is the built-in browser client of the sidecar's audio:
// a page with play/stop, microphone on/off, volume, level meters and the
// stream's figures, over an ES module that other pages can import
// (connectSpeaker, connectMicrophone). The speaker plays Opus pages with
// WebCodecs' AudioDecoder into an AudioWorklet jitter buffer; the
// microphone encodes Opus with AudioEncoder, or sends float32 PCM with its
// rate declared where WebCodecs is missing.
//
// The files are written by hand, embedded in the binary and served as they
// are: no build step, no CDN, nothing fetched from elsewhere. WebCodecs,
// AudioWorklet and getUserMedia exist only on secure pages (https, or a
// loopback address), which is why the speaker port serves them rather than
// the ops port: behind abcdesktop's router the page is https://HOST/sound/.
package webclient

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// file is one served file, read once.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// files maps request paths to files. The page refers to the others by
// relative URLs, so it works under any prefix a proxy strips (/sound/).
var files = func() map[string]file {
	m := map[string]file{}
	for path, name := range map[string]string{
		"/":           "index.html",
		"/client.js":  "client.js",
		"/page.js":    "page.js",
		"/worklet.js": "worklet.js",
	} {
		body, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			panic("webclient: embedded " + name + ": " + err.Error())
		}
		ct := "text/javascript; charset=utf-8"
		if strings.HasSuffix(name, ".html") {
			ct = "text/html; charset=utf-8"
		}
		sum := sha256.Sum256(body)
		m[path] = file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return m
}()

// securityHeaders keep the page to its own files. connect-src allows any
// ws/wss origin because ?microphone= may name another host; the token in
// the page's URL is not sent on as a Referer.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
}

// Handler serves the client: GET / is the page, /client.js the module,
// /page.js the page's script and /worklet.js the AudioWorklet processors;
// anything else is 404, methods other than GET and HEAD 405. Websocket
// upgrades are the caller's to route elsewhere before this handler.
//
// Every response carries an ETag and "Cache-Control: no-cache": browsers
// revalidate each time (a 304 when unchanged), so the page and its module
// are always from the same build after the sidecar is upgraded.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		for k, v := range securityHeaders {
			h.Set(k, v)
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		// ServeContent answers If-None-Match, HEAD and ranges; the
		// zero modification time leaves Last-Modified out.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}
