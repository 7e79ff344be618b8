package config

import "strings"

// Asterisk's chan_sip (channels/chan_sip.c of Asterisk 20, the last release
// that has it: build_peer, handle_common_options, handle_t38_options and
// reload_config's [general] loop, plus main/tcptls.c's tls*, main/rtp_engine.c's
// dtls* and main/abstract_jb.c's jb* keys) accepts far more keys than the box
// implements. A real sip.conf must paste in, so every key chan_sip knows is
// either implemented (sip.go) or accepted with one "ignored: why" warning.
// A key chan_sip does not know is still an error with "did you mean".

// sipIgnoredWhy maps each ignored chan_sip key to why it changes nothing.
var sipIgnoredWhy = map[string]string{}

// sipPeerIgnored and sipGeneralIgnored are the keys chan_sip accepts in a
// peer section and in [general] that the box ignores.
var sipPeerIgnored, sipGeneralIgnored = map[string]bool{}, map[string]bool{}

// peerDefaultKeys are the [general] keys chan_sip uses as every peer's
// default (handle_common_options on the global flags, default_qualify,
// default_maxforwards, default_context): a peer's own line overrides them.
var peerDefaultKeys = map[string]bool{
	"qualify": true, "nat": true, "directmedia": true, "canreinvite": true,
	"insecure": true, "maxforwards": true, "dtmfmode": true, "context": true,
	"session-timers": true, "session-expires": true, "session-minse": true, "session-refresher": true,
	"rtptimeout": true, "rtpholdtimeout": true,
}

func init() {
	const (
		peer    = 1
		general = 2
		both    = peer | general
	)
	groups := []struct {
		where int
		why   string
		keys  string
	}{
		{both, "the box does not rewrite caller ID: the caller's From passes to the called leg",
			"callerid fullname cid_number cid_tag callingpres sendrpid trustrpid rpid_update rpid_immediate trust_id_outbound shrinkcallerid"},
		{both, "the box has no voicemail or message-waiting indication",
			"mailbox hasvoicemail vmexten subscribemwi buggymwi mwi_from unsolicited_mailbox"},
		{general, "the box has no voicemail or message-waiting indication", "mwi mwiexpiry mwiexpirey"},
		{peer, "the box has no call pickup groups", "callgroup pickupgroup namedcallgroup namedpickupgroup"},
		{both, "the SDP passes between the legs unchanged; the box does not add, remove or transcode media streams",
			"videosupport textsupport autoframing maxcallbitrate preferred_codec_only ignore_requested_pref g726nonstandard ignoresdpversion rtp_engine"},
		{both, "fax passes through the call as the endpoints negotiate it", "t38pt_udptl t38pt_usertpsource faxdetect"},
		{both, "the box does not encrypt or rewrite media (no SRTP, DTLS, ICE, AVPF or RTCP-mux)",
			"encryption encryption_taglen avpf force_avp icesupport rtcp_mux " +
				"dtlsenable dtlsverify dtlsrekey dtlsautogeneratecert dtlscertfile dtlsprivatekey dtlscipher dtlscafile dtlscapath dtlscadir dtlssetup dtlsfingerprint"},
		{peer, "named ACLs (acl.conf) and contact/direct-media ACLs are not enforced; write permit=/deny= in the peer",
			"acl contactacl contactpermit contactdeny directmediaacl directmediapermit directmediadeny"},
		{general, "named ACLs (acl.conf) and contact ACLs are not enforced; write permit=/deny= in [general] or the peer",
			"contactacl contactpermit contactdeny"},
		{both, "the box does not handle REFER transfers", "allowtransfer promiscredir"},
		{both, "the box has no call parking, music on hold or call recording",
			"parkinglot mohinterpret mohsuggest recordonfeature recordofffeature"},
		{both, "the box plays no tones", "tonezone progressinband"},
		{both, "call records carry no account code or AMA flags", "accountcode amaflags"},
		{general, "the box sends requests to the peer's host or registered contact, never through a proxy", "outboundproxy"},
		{both, "the box serves no SUBSCRIBE (presence) or MESSAGE requests",
			"subscribecontext allowsubscribe outofcall_message_context"},
		{general, "the box serves no SUBSCRIBE (presence) or MESSAGE requests",
			"accept_outofcall_message auth_message_requests notifyringing notifyhold notifycid notifymimetype subscribe_network_change_event submaxexpiry submaxexpirey subminexpiry subminexpirey"},
		{both, "SIP timers are RFC 3261's defaults (T1 500 ms, Timer B 64*T1)", "timert1 timerb"},
		{general, "SIP timers are RFC 3261's defaults (T1 500 ms, Timer B 64*T1)", "t1min"},
		{both, "the box sends no RTP of its own to keep NAT bindings open", "rtpkeepalive"},
		{both, "the box sends no NAT keep-alives; registrations refresh the binding", "keepalive"},
		{both, "the box sends no Reason: Q.850 or Diversion headers", "use_q850_reason"},
		{general, "the box sends no Reason: Q.850 or Diversion headers", "send_diversion"},
		{both, "the box does not build From/Contact from these; it relays the caller's", "usereqphone"},
		{general, "fromuser and fromdomain are set per trunk peer", "fromuser fromdomain"},
		{peer, "the box authenticates inbound requests only; it sends no credentials to peers", "auth remotesecret"},
		{both, "channel variables and added headers are not supported", "setvar header"},
		{both, "every method the box implements is allowed", "disallowed_methods"},
		{both, "the box does not track hold", "discard_remote_hold_retrieval"},
		{both, "the box sends no advice of charge", "snom_aoc_enabled"},
		{both, "calls are always counted per peer (see call-limit)", "callcounter"},
		{both, "the box has no overlap dialling: the dial plan matches the whole number in the INVITE", "allowoverlap"},
		{both, "DTMF passes through in the media unchanged", "rfc2833compensate relaxdtmf"},
		{both, "the box sends no Path or client codes", "supportpath useclientcode"},
		{peer, "realtime-only field: registrations live in the box's database", "fullcontact ipaddr lastms regseconds name useragent"},
		{peer, "the box makes no outbound registrations", "callbackextension trunkname"},
		{general, "outbound registrations retry every registertimeout (backing off), whatever the answer", "register_retry_403"},
		{general, "the box does not resolve hosts again on a timer, does not create extensions on registration", "externrefresh regcontext regextenonqualify"},
		{general, "the box serves SIP over UDP only", "tcpenable tcpbindaddr tcpauthtimeout tcpauthlimit websocket_enabled websocket_write_timeout externtcpport externtlsport " +
			"tlsenable sslenable tlscertfile sslcert tlscert tlsprivatekey sslprivatekey tlscipher sslcipher tlscafile tlscapath tlscadir tlsverifyclient tlsdontverifyserver tlsbindaddr sslbindaddr tlsclientmethod sslclientmethod tlsservercipherorder tlsdisablev1 tlsdisablev11 tlsdisablev12"},
		{general, "the box answers at the address each request came from (rport, RFC 3581) and puts no NAT address in SDP; use externip for the Contact",
			"localnet externaddr externhost media_address rtpbindaddr matchexternaddrlocally matchexterniplocally"},
		{general, "the box has no jitter buffer: RTP is relayed as it arrives",
			"jbenable jbforce jbmaxsize jbresyncthreshold jbimpl jbtargetextra jblog jbsyncvideo"},
		{general, "the box sets no IP TOS/CoS marks", "tos_sip tos_audio tos_video tos_text cos_sip cos_audio cos_video cos_text"},
		{general, "the box has no realtime (database) peers", "rtcachefriends rtsavesysname rtsavepath rtupdate rtautoclear ignoreregexpire"},
		{general, "the box accepts requests for any domain", "domain autodomain allowexternaldomains domainsasrealm"},
		{general, "peers are defined in the config only", "autocreatepeer"},
		{general, "the box logs through its own log level and console", "sipdebug recordhistory dumphistory authfailureevents storesipcause"},
		{general, "the box keeps its own SDP session lines", "sdpowner sdpsession"},
		{general, "the box sends full-length headers", "compactheaders"},
		{general, "the box does not answer before the call is answered", "prematuremedia directrtpsetup"},
		{general, "qualify runs per peer with qualifyfreq; there is no global spread", "qualifypeers qualifygap"},
		{general, "peers' usernames are matched as written", "match_auth_username legacy_useroption_parsing dynamic_exclude_static dynamic_excludes_static"},
		{general, "OPTIONS are answered without authentication", "auth_options_requests"},
		{general, "REFER is not supported", "refer_addheaders"},
		{general, "the box does not play pedantic SIP checks differently: every request is parsed strictly", "pedantic"},
	}
	for _, g := range groups {
		for _, k := range strings.Fields(g.keys) {
			if g.where&peer != 0 && !sipPeerIgnored[k] {
				sipPeerIgnored[k] = true
				if _, ok := sipIgnoredWhy["peer:"+k]; !ok {
					sipIgnoredWhy["peer:"+k] = g.why
				}
			}
			if g.where&general != 0 && !sipGeneralIgnored[k] {
				sipGeneralIgnored[k] = true
				if _, ok := sipIgnoredWhy["general:"+k]; !ok {
					sipIgnoredWhy["general:"+k] = g.why
				}
			}
		}
	}
}

// ignoredWhy returns why chan_sip key k is ignored in [general]
// (general) or a peer, or "" if it is not one of them.
func ignoredWhy(k string, general bool) string {
	if general {
		if sipGeneralIgnored[k] {
			return sipIgnoredWhy["general:"+k]
		}
		return ""
	}
	if sipPeerIgnored[k] {
		return sipIgnoredWhy["peer:"+k]
	}
	return ""
}

// extensions.conf (pbx/pbx_config.c): its [general] keys, the keys of a
// context beyond exten/same/include, and the [globals] section.
var (
	contextIgnored = map[string]string{
		"ignorepat": "the box has no dial tone to keep",
		"switch":    "the box has no dial-plan switches (IAX2, DUNDi, realtime)",
		"lswitch":   "the box has no dial-plan switches (IAX2, DUNDi, realtime)",
		"eswitch":   "the box has no dial-plan switches (IAX2, DUNDi, realtime)",
		"autohints": "the box serves no presence hints",
	}
	// ignoredSections are whole sections of sip.conf / extensions.conf
	// the box accepts and ignores, by lower-case name.
	ignoredSections = map[string]string{
		"globals":        "extensions.conf's global variables: the dial plan has no variables",
		"authentication": "sip.conf's outbound credentials: the box sends no credentials to peers",
	}
)
