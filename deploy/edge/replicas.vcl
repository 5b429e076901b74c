# The replicas behind the edge, for deploy/edge/mediacache.vcl: one backend each, all in
# the hash director `replicas` (one URL always goes to the same replica while it is
# healthy, so its in-process L1 holds its share). Two on loopback here; list yours.
probe healthz {
    .url = "/healthz";
    .interval = 2s;
    .timeout = 1s;
    .window = 3;
    .threshold = 2;
}

backend replica1 {
    .host = "127.0.0.1";
    .port = "8001";
    .probe = healthz;
}

backend replica2 {
    .host = "127.0.0.1";
    .port = "8002";
    .probe = healthz;
}

sub vcl_init {
    new replicas = directors.hash();
    replicas.add_backend(replica1, 1.0);
    replicas.add_backend(replica2, 1.0);
}
