package ppp

import "github.com/isp-box/isp-box/internal/clock"

// Clock is the time source of a session: restart timers, echo, idle and
// maxconnect. Tests use testing/synctest with the real clock, or their own.
type Clock = clock.Clock

// Timer is a stoppable, resettable timer, as *time.Timer.
type Timer = clock.Timer
