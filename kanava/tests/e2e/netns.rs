//! Hosts in network namespaces for the cluster fault suite: a router namespace joined to each
//! host namespace by a veth pair, and to the root namespace (where the test runs) by one more,
//! so that the test reaches every host while hosts can be cut off from each other with
//! blackhole routes. Such a cut leaves established TCP connections hanging, without a reset,
//! as a real network partition does. Needs root (`ip netns`); everything is removed on drop,
//! also when the test panics.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Networks of this test process made so far, which makes names and subnets unique per run.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// Serialises the choice of a free subnet within this process.
static CHOOSING: Mutex<()> = Mutex::new(());

/// A router namespace and `hosts` host namespaces: host `i` (from 0) has the address
/// 10.X.(i+1).2, its router side 10.X.(i+1).1; the root namespace has 10.X.0.1 and routes
/// 10.X.0.0/16 through the router (10.X.0.2).
pub struct Network {
    /// Second octet of every address: unique among the networks on this machine.
    subnet: u8,
    router: String,
    hosts: Vec<String>,
    /// The root namespace's end of its veth pair to the router.
    root_link: String,
    /// Hosts cut off from the others by [`isolate`](Self::isolate), not yet healed.
    isolated: Vec<usize>,
}

impl Network {
    /// Makes the namespaces, links, addresses and routes. Panics with what failed, and a hint
    /// when the test does not run as root.
    pub fn new(hosts: usize) -> Network {
        assert!(
            // SAFETY: geteuid(2) has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "the cluster fault suite builds network namespaces with `ip netns` and needs root \
             (run the test as root)"
        );
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("kf{pid}-{run}");
        let mut network = Network {
            subnet: 0,
            router: format!("{name}-r"),
            hosts: (1..=hosts).map(|i| format!("{name}-h{i}")).collect(),
            root_link: format!("kf{}x{run}", pid % 100_000),
            isolated: Vec::new(),
        };
        for ns in std::iter::once(&network.router).chain(&network.hosts) {
            // A namespace left by an earlier process with the same PID that was killed.
            let _ = ip(&["netns", "del", ns]);
            ip(&["netns", "add", ns]).unwrap_or_else(|e| panic!("{e}"));
            ip(&["-n", ns, "link", "set", "lo", "up"]).unwrap_or_else(|e| panic!("{e}"));
        }
        network.claim_subnet(run);
        network.setup().unwrap_or_else(|e| panic!("{e}"));
        network
    }

    /// Finds a 10.X.0.0/16 that nothing on this machine routes and claims it: the root
    /// namespace's link to the router and its route through it.
    fn claim_subnet(&mut self, run: u32) {
        let _choosing = CHOOSING.lock().unwrap_or_else(|e| e.into_inner());
        let _ = ip(&["link", "del", &self.root_link]);
        ip(&[
            "link",
            "add",
            &self.root_link,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &self.router,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let start = std::process::id().wrapping_mul(7).wrapping_add(run * 13);
        for k in 0..150 {
            let subnet = u8::try_from(100 + (start.wrapping_add(k)) % 150).unwrap();
            let prefix = format!("10.{subnet}.0.0/16");
            let taken = !output(&["-4", "route", "show", "root", &prefix])
                .trim()
                .is_empty()
                || !output(&["-4", "addr", "show", "to", &prefix])
                    .trim()
                    .is_empty();
            if taken {
                continue;
            }
            let claimed = ip(&[
                "addr",
                "add",
                &format!("10.{subnet}.0.1/24"),
                "dev",
                &self.root_link,
            ])
            .and_then(|()| ip(&["link", "set", &self.root_link, "up"]))
            .and_then(|()| {
                ip(&[
                    "-n",
                    &self.router,
                    "addr",
                    "add",
                    &format!("10.{subnet}.0.2/24"),
                    "dev",
                    "up0",
                ])
            })
            .and_then(|()| ip(&["-n", &self.router, "link", "set", "up0", "up"]))
            .and_then(|()| ip(&["route", "add", &prefix, "via", &format!("10.{subnet}.0.2")]));
            match claimed {
                Ok(()) => {
                    self.subnet = subnet;
                    return;
                }
                // Another process took it between the check and the route: the next one.
                Err(_) => {
                    let _ = ip(&["addr", "flush", "dev", &self.root_link]);
                    let _ = ip(&["-n", &self.router, "addr", "flush", "dev", "up0"]);
                }
            }
        }
        panic!("no free 10.X.0.0/16 (X in 100..250) for the test network");
    }

    /// Links each host to the router and gives the router forwarding.
    fn setup(&self) -> Result<(), String> {
        let x = self.subnet;
        ip(&[
            "netns",
            "exec",
            &self.router,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ])?;
        for (i, host) in self.hosts.iter().enumerate() {
            let n = i + 1;
            let router_side = format!("to-h{n}");
            ip(&[
                "link",
                "add",
                &router_side,
                "netns",
                &self.router,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host,
            ])?;
            ip(&[
                "-n",
                &self.router,
                "addr",
                "add",
                &format!("10.{x}.{n}.1/24"),
                "dev",
                &router_side,
            ])?;
            ip(&["-n", &self.router, "link", "set", &router_side, "up"])?;
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("10.{x}.{n}.2/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", host, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                host,
                "route",
                "add",
                "default",
                "via",
                &format!("10.{x}.{n}.1"),
            ])?;
        }
        Ok(())
    }

    /// Host `i`'s address.
    pub fn host_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, u8::try_from(i + 1).unwrap(), 2)
    }

    /// The command prefix that runs a program on host `i`: `ip netns exec NS`, which execs
    /// the program (its PID is the program's).
    pub fn exec(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.hosts[i]]
    }

    /// Cuts host `i` off from every other host (both directions), not from the test.
    pub fn isolate(&mut self, i: usize) {
        assert!(!self.isolated.contains(&i), "host {i} is already isolated");
        self.blackholes(i, "add").unwrap_or_else(|e| panic!("{e}"));
        self.isolated.push(i);
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn heal(&mut self, i: usize) {
        self.isolated.retain(|h| *h != i);
        self.blackholes(i, "del").unwrap_or_else(|e| panic!("{e}"));
    }

    fn blackholes(&self, i: usize, action: &str) -> Result<(), String> {
        for j in (0..self.hosts.len()).filter(|j| *j != i) {
            let (to_j, to_i) = (self.host_ip(j), self.host_ip(i));
            ip(&[
                "-n",
                &self.hosts[i],
                "route",
                action,
                "blackhole",
                &format!("{to_j}/32"),
            ])?;
            ip(&[
                "-n",
                &self.hosts[j],
                "route",
                action,
                "blackhole",
                &format!("{to_i}/32"),
            ])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links, and the root namespace's end of its pair
        // with them (and so the route through it); the explicit deletes are for a partly made
        // network.
        for ns in std::iter::once(&self.router).chain(&self.hosts) {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.root_link]);
    }
}

/// Runs `ip ARGS`; Err says which command failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip (iproute2) cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What `ip ARGS` prints (empty when it fails).
fn output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
