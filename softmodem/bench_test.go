package softmodem

import (
	"testing"

	"github.com/isp-box/isp-box/softmodem/g711"
	"github.com/isp-box/isp-box/softmodem/internal/linesim"
)

// BenchmarkLine measures one modem's cost per 8 kHz sample in data mode
// (receive and transmit, both directions busy): a trained pair runs over
// a μ-law line and the time is split between its two modems. A line needs
// 8000 samples a second, so a core carries 1e9/(8000 × ns/sample) lines.
func BenchmarkLine(b *testing.B) {
	for _, mod := range []Modulation{V21, Bell103, V22, V22bis} {
		b.Run(mod.String(), func(b *testing.B) {
			ans := New(fastAnswer(Config{Modulation: mod, Role: Answer}))
			org := New(Config{Modulation: mod, Role: Originate})
			line := linesim.New(ans, org, linesim.Impairments{Law: g711.Ulaw}, linesim.Impairments{Law: g711.Ulaw})
			if !line.Run(20, func() bool { return ans.State() == StateData && org.State() == StateData }) {
				b.Fatal("no training")
			}
			fill := randomBytes(1<<20, 1)
			ans.Write(fill)
			org.Write(fill)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				line.Step()
				if i%4096 == 0 {
					ans.TakeReceived()
					org.TakeReceived()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*line.Block), "ns/sample/line")
		})
	}
}
