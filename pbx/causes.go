package pbx

// Q.850 causes as Asterisk names them (include/asterisk/causes.h).
const (
	causeUnallocated    = 1
	causeNormalClearing = 16
	causeBusy           = 17
	causeNoUserResponse = 18
	causeNoAnswer       = 19
	causeUnregistered   = 20
	causeCallRejected   = 21
	causeCongestion     = 34
	causeInterworking   = 127
)

// sip2cause is chan_sip's hangup_sip2cause (C 6997-7080).
func sip2cause(code int) int {
	switch code {
	case 401, 403, 407, 603:
		return causeCallRejected
	case 404, 485, 604:
		return causeUnallocated
	case 408:
		return causeNoUserResponse
	case 410:
		return 22
	case 480:
		return causeNoAnswer
	case 482, 483:
		return 25
	case 484:
		return 28
	case 486, 600:
		return causeBusy
	case 488, 606:
		return 58
	case 500:
		return 41
	case 501:
		return 79
	case 502:
		return 38
	case 503:
		return causeCongestion
	case 504:
		return 102
	}
	switch {
	case code >= 400 && code < 500:
		return causeInterworking
	case code >= 500 && code < 600:
		return causeCongestion
	case code >= 600 && code < 700:
		return causeInterworking
	}
	return causeNormalClearing
}

// cause2sip is chan_sip's hangup_cause2sip (C 7119-7160); 0 and unknown
// causes give 603 Declined (C 7321-7325).
func cause2sip(cause int) (int, string) {
	switch cause {
	case 1, 2, 3:
		return 404, "Not Found"
	case causeBusy:
		return 486, "Busy here"
	case causeNoUserResponse:
		return 408, "Request Timeout"
	case causeNoAnswer, causeUnregistered, 31:
		return 480, "Temporarily unavailable"
	case causeCallRejected:
		return 403, "Forbidden"
	case 22:
		return 410, "Gone"
	case 27:
		return 502, "Bad Gateway"
	case 28:
		return 484, "Address incomplete"
	case 29:
		return 501, "Not Implemented"
	case causeCongestion, 42:
		return 503, "Service Unavailable"
	case 38:
		return 500, "Server internal failure"
	case 58:
		return 488, "Not Acceptable Here"
	case causeInterworking:
		return 500, "Network error"
	}
	return 603, "Declined"
}
