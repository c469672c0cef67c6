//! Direct access to the f32 data of CPU tensors, for kernels that work on slices.

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Storage, Tensor};

/// Calls `f` with the tensor's elements as one contiguous f32 slice, copying only when the
/// tensor is strided or of another dtype.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[start..end]));
        }
    }
    let copy = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&copy))
}

/// Mutates a contiguous f32 CPU tensor in place (outside autograd: for optimizer updates).
pub fn update_f32(t: &Tensor, f: impl FnOnce(&mut [f32])) -> Result<()> {
    struct Update<F>(std::cell::RefCell<Option<F>>);
    impl<F: FnOnce(&mut [f32])> InplaceOp1 for Update<F> {
        fn name(&self) -> &'static str {
            "update_f32"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("update_f32: strided tensor".into()))?;
            match storage {
                CpuStorage::F32(data) => {
                    let f = self.0.borrow_mut().take().expect("called once");
                    f(&mut data[start..end]);
                    Ok(())
                }
                _ => candle_core::bail!("update_f32: not an f32 tensor"),
            }
        }
    }
    t.inplace_op1(&Update(std::cell::RefCell::new(Some(f))))
}
