//! The objects a process serves: its object table, plus what the
//! transport's one-sided reads must learn about every object entering or
//! leaving it. Puts from this process and puts a data server receives go
//! through the same three steps, written once here.

use std::sync::Arc;

use bytes::Bytes;
use proxystore_core::{ObjectId, ObjectTable};

use crate::rma::Expose;

/// An object table and the one-sided registrations of what it holds.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    table: Arc<ObjectTable>,
    exposures: Option<Arc<dyn Expose>>,
}

impl Served {
    pub(crate) fn new(table: Arc<ObjectTable>, exposures: Option<Arc<dyn Expose>>) -> Self {
        Served { table, exposures }
    }

    pub(crate) fn exposures(&self) -> Option<&Arc<dyn Expose>> {
        self.exposures.as_ref()
    }

    pub(crate) fn with_exposures(mut self, exposures: Arc<dyn Expose>) -> Self {
        self.exposures = Some(exposures);
        self
    }

    /// Stores `data` under `id`: staged where the transport reads it
    /// fastest, then published (a transport with a directory of readable
    /// objects lists it there) once the table holds it.
    pub(crate) fn insert(&self, id: ObjectId, data: Bytes) {
        let Some(e) = &self.exposures else {
            self.table.insert(id, data);
            return;
        };
        let data = e.stage(data);
        self.table.insert(id, data.clone());
        e.published(id, &data);
    }

    pub(crate) fn get(&self, id: ObjectId) -> Option<Bytes> {
        self.table.get(id)
    }

    pub(crate) fn contains(&self, id: ObjectId) -> bool {
        self.table.contains(id)
    }

    /// Removes `id`: withdrawn from the transport first, so no reader
    /// finds it listed once its memory may be reused.
    pub(crate) fn remove(&self, id: ObjectId) {
        if let Some(e) = &self.exposures {
            e.withdrawn(id);
        }
        drop(self.table.remove(id));
    }

    /// Removes every object (withdrawn first, as [`Served::remove`]).
    pub(crate) fn clear(&self) {
        for (id, data) in self.table.drain() {
            if let Some(e) = &self.exposures {
                e.withdrawn(id);
            }
            drop(data);
        }
    }
}
