"""A real Kubernetes control plane on this machine: `openbell cluster up|down|status|env`.

kube-apiserver, kube-controller-manager and kube-scheduler (k8s.io/kubernetes), etcd and KWOK (nodes and pods
without a kubelet), built from the Go module proxy by scripts/kube-build.sh into the openbell cache. They run
in a private network and PID namespace of their own: the API server is reached at 10.201.0.2:6443 over a veth
pair, the pod network 10.244.0.0/24 is routed to the namespace (so a process listening on a pod's IP there is
that pod, reachable from this machine and through the API server's pod proxy), and everything in it dies with
its first process. Nothing routes out of it: no traffic can leave the machine.
"""
