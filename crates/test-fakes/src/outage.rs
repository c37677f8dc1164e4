//! A loopback TCP proxy that can take a service off the network: in front of a fake (or a
//! real process), it forwards byte for byte while up; [`Outage::refuse`] closes its listener
//! and cuts every open connection, so clients see "connection refused" as when a bridge is
//! unplugged; [`Outage::up`] listens again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy; dropping it stops everything.
pub struct Outage {
    /// The proxy's URL (`http://127.0.0.1:port`): give this to the client instead of the
    /// target's.
    pub url: String,
    addr: SocketAddr,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Outage {
    /// A proxy to `target_url` (`http://host:port`), up.
    pub async fn start(target_url: &str) -> Self {
        let target: SocketAddr = target_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("a http://ip:port URL");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Self {
            url: format!("http://{addr}"),
            addr,
            target,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Off the network: the listener is closed and open connections are cut.
    pub fn refuse(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Back: listening on the same port again.
    pub async fn up(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "cannot listen on {} again: {e}",
                        self.addr
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.refuse();
    }
}
