//! One statement's memory pool: at most its own limit, drawn from the budget the engine's
//! statements share, so twenty heavy statements cannot hold twenty limits' worth together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// A statement's pool over the shared budget.
#[derive(Debug)]
pub(crate) struct QueryPool {
    /// The engine's budget.
    shared: Arc<dyn MemoryPool>,
    /// This statement's limit.
    limit: usize,
    /// What this statement holds.
    used: AtomicUsize,
}

impl QueryPool {
    /// A pool of at most `limit` bytes out of `shared`.
    pub(crate) fn new(shared: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            shared,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "adit-query({} of {} bytes)", self.reserved(), self.limit)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "adit-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::SeqCst);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::SeqCst);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let now = self.used.fetch_add(additional, Ordering::SeqCst) + additional;
        if now > self.limit {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(resources_datafusion_err!(
                "{} needs {additional} more bytes; the statement holds {} of its {} (query.limits.memory_bytes)",
                reservation.consumer().name(),
                now - additional,
                self.limit
            ));
        }
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(resources_datafusion_err!(
                "the server's query memory (query.limits.total_memory_bytes) is in use by other statements: {}",
                e.message()
            ));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_statement_is_held_to_its_limit_and_to_the_shared_budget() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(150));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(shared.clone(), 100));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(shared.clone(), 100));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(90).unwrap();
        assert!(
            ra.try_grow(20)
                .unwrap_err()
                .to_string()
                .contains("memory_bytes")
        );
        rb.try_grow(50).unwrap();
        let e = rb.try_grow(20).unwrap_err().to_string();
        assert!(e.contains("total_memory_bytes"), "{e}");
        assert_eq!(
            (a.reserved(), b.reserved(), shared.reserved()),
            (90, 50, 140)
        );
        ra.free();
        rb.try_grow(20).unwrap();
        assert_eq!(shared.reserved(), 70);
    }
}
