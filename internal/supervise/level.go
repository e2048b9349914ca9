package supervise

import (
	"bytes"
	"log/slog"
)

// LineLevel picks the log level of one line a child printed. The children
// here say how bad a line is in one of two ways:
//
//   - PulseAudio prefixes every line with its level: "E: ", "W: ", "N: ",
//     "I: ", "D: ";
//   - ffmpeg run with -loglevel level+... tags lines "[error] ",
//     "[warning] " (after its "[module @ 0x...] " context, if any); run with
//     -loglevel warning (the encoder), it prints only warnings and errors
//     and says which in words.
//
// Anything else is a warning, or an error when it reads like one ("error",
// "failed", "cannot", a missing library): a child of this daemon writes to
// stderr only when something is wrong, and an operator filtering on
// level>=warn must see "error while loading shared libraries".
func LineLevel(line []byte) slog.Level {
	if len(line) >= 3 && line[1] == ':' && line[2] == ' ' {
		switch line[0] {
		case 'E':
			return slog.LevelError
		case 'W':
			return slog.LevelWarn
		case 'N', 'I':
			return slog.LevelInfo
		case 'D':
			return slog.LevelDebug
		}
	}
	for _, t := range ffmpegTags {
		if bytes.HasPrefix(line, t.tag) || bytes.Contains(line, t.inner) {
			return t.level
		}
	}
	lower := bytes.ToLower(line)
	for _, w := range errorWords {
		if bytes.Contains(lower, w) {
			return slog.LevelError
		}
	}
	return slog.LevelWarn
}

type levelTag struct {
	tag, inner []byte // "[error] " at the start, "] [error] " after a context
	level      slog.Level
}

func tag(name string, l slog.Level) levelTag {
	return levelTag{[]byte("[" + name + "] "), []byte("] [" + name + "] "), l}
}

var ffmpegTags = []levelTag{
	tag("panic", slog.LevelError), tag("fatal", slog.LevelError), tag("error", slog.LevelError),
	tag("warning", slog.LevelWarn), tag("info", slog.LevelInfo), tag("verbose", slog.LevelDebug),
	tag("debug", slog.LevelDebug), tag("trace", slog.LevelDebug),
}

var errorWords = [][]byte{
	[]byte("error"), []byte("failed"), []byte("fatal"), []byte("cannot"), []byte("can't"),
	[]byte("unable"), []byte("no such file"), []byte("denied"), []byte("refused"),
	[]byte("invalid"), []byte("not found"),
}
