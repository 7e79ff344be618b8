package modem

import "github.com/isp-box/isp-box/internal/clock"

// Clock is a line's time source: every wait (backoff, DTR toggle, guard
// times, chat and ring timeouts, the login clock) goes through it, so tests
// can run the line under testing/synctest or with a clock of their own.
type Clock = clock.Clock

// Timer is a stoppable, resettable timer, as *time.Timer.
type Timer = clock.Timer
