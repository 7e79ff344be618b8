package pppdvm

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// cpioFile is one regular file of a newc archive.
type cpioFile struct {
	Name string // absolute or relative path in the guest; parents are made
	Mode uint32 // permission bits
	Data []byte
}

// newc mode bits (cpio(5)).
const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	newcHead = 110 // bytes in a newc header
)

// writeCpio writes files as an uncompressed "newc" cpio archive (the format
// the kernel unpacks into the initramfs, Documentation/driver-api/
// early-userspace/buffer-format.rst), with the directories they need and the
// TRAILER!!! entry. Entries are owned by root and dated 0 so that an archive
// depends only on its files.
func writeCpio(w io.Writer, files []cpioFile) error {
	dirs := map[string]bool{}
	var names []string
	for _, f := range files {
		for d := path.Dir(clean(f.Name)); d != "." && d != "/"; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				names = append(names, d)
			}
		}
	}
	sort.Strings(names) // a parent sorts before its children
	ino := uint32(1)
	for _, d := range names {
		if err := writeEntry(w, ino, d, cpioDir|0o755, nil); err != nil {
			return err
		}
		ino++
	}
	for _, f := range files {
		if err := writeEntry(w, ino, clean(f.Name), cpioReg|f.Mode&0o7777, f.Data); err != nil {
			return err
		}
		ino++
	}
	return writeEntry(w, 0, "TRAILER!!!", 0, nil)
}

// clean makes name relative, as `find . | cpio -o` would.
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func writeEntry(w io.Writer, ino uint32, name string, mode uint32, data []byte) error {
	nlink := 1
	if mode&cpioDir != 0 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
	// rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := make([]byte, 0, newcHead+len(name)+4+len(data)+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("pppdvm: writing cpio entry %s: %w", name, err)
	}
	return nil
}

// pad4 pads b with NULs to a multiple of 4 bytes. Every newc header and file
// body starts 4-byte aligned; entries are written whole so len(b) is the
// offset from the entry's start, which is itself aligned.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
