//! The sizes of one CHW activation, shared by the ops that take a whole map (pooling, total
//! variation) and by the network's plan, which gives every activation one.

/// Channels, height and width of one activation (the image, a feature map, a pool's input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActShape {
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ActShape {
    /// Values in the activation.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the activation has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows after a 2x2 pool with stride 2 (floor).
    pub fn out_height(&self) -> usize {
        self.height / 2
    }

    /// Columns after a 2x2 pool with stride 2 (floor).
    pub fn out_width(&self) -> usize {
        self.width / 2
    }

    /// Values a pool reads: `len`.
    pub fn input_len(&self) -> usize {
        self.len()
    }

    /// Values a 2x2 pool with stride 2 writes.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_height() * self.out_width()
    }
}
