# Varnish in front of Mediacache's replicas: caches /media/ by the service's own headers,
# purged by the service (MEDIA_EDGE_PURGE=varnish, MEDIA_EDGE_PURGE_URLS=http://<this>:<port>/).
# Varnish 7.1 with vmod-xkey (Debian: apt-get install varnish varnish-modules).
#
#   varnishd -F -a :6081 -f /path/to/deploy/edge/mediacache.vcl -s malloc,256m
#
# The replicas are in replicas.vcl beside this file (an example for two on loopback):
# edit it, or write your own and put its folder first in -p vcl_path.
vcl 4.1;

import directors;
import xkey;

include "replicas.vcl";

# Who may purge: the replicas' addresses (each one's engine sends the purge of a delete).
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(405, "Not allowed"));
        }
        if (req.http.xkey-purge) {
            # Every object tagged with one of these keys (Surrogate-Key: media-<hash>),
            # whatever URL form and query string it was fetched under.
            set req.http.n-gone = xkey.purge(req.http.xkey-purge);
            return (synth(200, "Invalidated " + req.http.n-gone + " objects"));
        }
        return (purge);
    }
    if (req.url ~ "^/media/") {
        # Evolution appends ?timestamp=<ms>; the service ignores query strings, and so
        # must the cache key, or every fetch would be a miss.
        set req.url = regsub(req.url, "\?.*$", "");
        if (req.method != "GET" && req.method != "HEAD") {
            return (pass);
        }
        # Links are public: a cookie or credentials (which make Varnish pass by
        # default) change nothing in the answer.
        unset req.http.Cookie;
        unset req.http.Authorization;
        return (hash);
    }
    # The API, the admin, /ops/, webhooks: never cached here.
    return (pass);
}

sub vcl_backend_fetch {
    # One URL to one replica (vmod directors' hash), so its L1 holds what it is asked
    # for; chosen here, on the way to a replica, not for every hit.
    set bereq.backend = replicas.backend(bereq.url);
}

sub vcl_backend_response {
    if (bereq.url ~ "^/media/") {
        # The service tags each object (Surrogate-Key); xkey indexes it by this header.
        set beresp.http.xkey = beresp.http.Surrogate-Key;
        # Lifetime: s-maxage from the service (Varnish prefers it to max-age). No
        # serving stale past it: a deleted object whose purge failed is asked about
        # again at once (the service answers 404); keep allows a 304 revalidation.
        set beresp.grace = 0s;
        set beresp.keep = 1h;
    }
}

sub vcl_deliver {
    # The tags are for this cache only.
    unset resp.http.xkey;
    unset resp.http.Surrogate-Key;
    unset resp.http.Cache-Tag;
    if (obj.hits > 0) {
        set resp.http.X-Edge = "HIT";
    } else {
        set resp.http.X-Edge = "MISS";
    }
}
