//! Embedding lookup whose backward touches only the rows it looked up.
//!
//! candle's `index_select` backward adds the rows into a copy of a zero table: for a
//! 30k-word vocabulary that is 94 MB written page by page every step (every page faulted in),
//! for a batch that uses a thousand rows. Here the gradient is a fresh zeroed allocation,
//! whose untouched pages the system never materialises, with the looked-up rows added in
//! token order (so a word that occurs twice gets the same sum on every run).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::slice;
use crate::cpu::with_f32;

struct Lookup;

/// The token ids of a contiguous u32 CPU tensor, each checked against the table's rows.
fn ids<'a>(storage: &'a CpuStorage, layout: &Layout, rows: usize) -> Result<&'a [u32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("embedding: expects contiguous ids".into()))?;
    let CpuStorage::U32(ids) = storage else {
        candle_core::bail!("embedding: expects u32 ids");
    };
    let ids = &ids[start..end];
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= rows) {
        candle_core::bail!("embedding: token id {bad} is outside the table's {rows} rows");
    }
    Ok(ids)
}

impl CustomOp2 for Lookup {
    fn name(&self) -> &'static str {
        "fused-embedding"
    }

    fn cpu_fwd(
        &self,
        ws: &CpuStorage,
        wl: &Layout,
        is: &CpuStorage,
        il: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, dim) = wl.shape().dims2()?;
        let table = slice(ws, wl, "embedding")?;
        let ids = ids(is, il, rows)?;
        let mut out = Vec::with_capacity(ids.len() * dim);
        for &id in ids {
            out.extend_from_slice(&table[id as usize * dim..][..dim]);
        }
        Ok((CpuStorage::F32(out), Shape::from((ids.len(), dim))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _out: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, dim) = table.dims2()?;
        let ids = ids.to_vec1::<u32>()?;
        let grad = with_f32(dy, |g| {
            let mut grad = vec![0f32; rows * dim];
            for (&id, g) in ids.iter().zip(g.chunks_exact(dim)) {
                let row = &mut grad[id as usize * dim..][..dim];
                row.iter_mut().zip(g).for_each(|(r, g)| *r += g);
            }
            grad
        })?;
        Ok((
            Some(Tensor::from_vec(grad, (rows, dim), table.device())?),
            None,
        ))
    }
}

/// The rows of `table` `(rows, dim)` at `ids` (any shape of integer ids), shaped
/// `(ids.elem_count(), dim)`.
pub fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let ids = ids.flatten_all()?.to_dtype(DType::U32)?.contiguous()?;
    table.contiguous()?.apply_op2(&ids, Lookup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn lookup_and_gradient_match_index_select() {
        let table: Vec<f32> = (0..15).map(|i| i as f32 * 0.5).collect();
        let table = Var::from_vec(table, (5, 3), &Device::Cpu).unwrap();
        // Token 3 twice: its gradient row is the sum of both.
        let ids = Tensor::new(&[[3u32, 0], [3, 4]], &Device::Cpu).unwrap();
        let weights = Tensor::new(&[1f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let run = |rows: Tensor| {
            let loss = rows
                .broadcast_mul(&weights)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all();
            let grads = loss.unwrap().backward().unwrap();
            let grad = grads.get(table.as_tensor()).unwrap().to_vec2::<f32>();
            (rows.to_vec2::<f32>().unwrap(), grad.unwrap())
        };
        let fused = run(embedding(table.as_tensor(), &ids).unwrap());
        let reference = run(table.index_select(&ids.flatten_all().unwrap(), 0).unwrap());
        assert_eq!(fused, reference);
    }

    #[test]
    fn an_id_outside_the_table_is_an_error() {
        let table = Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
        let ids = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
        let err = embedding(&table, &ids).unwrap_err().to_string();
        assert!(
            err.contains("token id 4 is outside the table's 4 rows"),
            "{err}"
        );
    }
}
