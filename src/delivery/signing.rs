//! Threads of their own for DKIM signatures (docs/standards.md#60): signing is CPU
//! work (an RSA-2048 signature takes about half a millisecond), so it never runs on
//! the async threads, which keep the relay connections busy meanwhile. One thread
//! per core, started at the first signature; a bounded queue in front of them makes
//! the senders wait, without blocking a thread, when signing is the bottleneck.

use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

pub struct Signers {
    jobs: mpsc::Sender<Job>,
}

impl Signers {
    pub fn start(threads: usize) -> std::io::Result<Signers> {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>(threads * 2);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("listd-dkim-{i}"))
                .spawn(move || {
                    loop {
                        // one thread waits on the queue; the others wait for the lock
                        let job = queue
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    }
                })?;
        }
        Ok(Signers { jobs })
    }

    /// Runs `f` on a signing thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| anyhow::anyhow!("the signing threads have stopped"))?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("a signing thread failed"))
    }
}
