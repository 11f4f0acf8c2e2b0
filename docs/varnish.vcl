vcl 4.1;
# Varnish 7 in front of an event stream. The builtin VCL already passes it uncached (it carries
# Cache-Control: no-cache) and streams it.

backend default {
	.host = "127.0.0.1";
	.port = "3000";
}

sub vcl_deliver {
	# send_timeout (default 600 s) bounds the whole delivery of a response, even while bytes flow:
	# an event stream never finishes, so Varnish would cut it every 10 minutes.
	if (resp.http.Content-Type ~ "^text/event-stream") {
		set sess.send_timeout = 24h;
	}
}
