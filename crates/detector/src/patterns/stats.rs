//! The statistics the detectors rely on: robust location and scale, and the chi-square
//! and Jensen-Shannon comparisons of two severity mixes.

use statrs::distribution::{ChiSquared, ContinuousCDF};

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median and scaled MAD of `values`.
pub fn robust_stats(values: &[f64]) -> (f64, f64) {
    let mut v = values.to_vec();
    let m = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    (m, 1.4826 * median(&mut dev))
}

/// Pearson's chi-square statistic of a 2 x k table (levels seen on either side) and its
/// degrees of freedom.
pub fn chi_square_homogeneity(a: &[u64; 5], b: &[u64; 5]) -> (f64, usize) {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let n = na + nb;
    if na == 0.0 || nb == 0.0 {
        return (0.0, 0);
    }
    let mut chi2 = 0.0;
    let mut levels = 0;
    for i in 0..5 {
        let col = (a[i] + b[i]) as f64;
        if col == 0.0 {
            continue;
        }
        levels += 1;
        for (obs, row) in [(a[i] as f64, na), (b[i] as f64, nb)] {
            let exp = row * col / n;
            chi2 += (obs - exp).powi(2) / exp;
        }
    }
    (chi2, levels.max(1) - 1)
}

/// Jensen-Shannon distance (square root of the divergence, base 2), in [0, 1].
pub fn js_distance(a: &[u64; 5], b: &[u64; 5]) -> f64 {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let mut js = 0.0;
    for i in 0..5 {
        let (p, q) = (a[i] as f64 / na, b[i] as f64 / nb);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            js += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            js += 0.5 * q * (q / m).log2();
        }
    }
    js.clamp(0.0, 1.0).sqrt()
}

/// P(X >= x) for X chi-square with `k` degrees of freedom (`statrs`); 1 for `x <= 0`, NaN
/// when `k` is not a positive number.
pub fn chi_square_sf(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    ChiSquared::new(k).map_or(f64::NAN, |d| d.sf(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_survival_matches_tables() {
        // Critical values at p = 0.001 for 1..=4 degrees of freedom.
        for (x, k) in [(10.828, 1.0), (13.816, 2.0), (16.266, 3.0), (18.467, 4.0)] {
            let p = chi_square_sf(x, k);
            assert!((p - 0.001).abs() < 2e-5, "k={k}: {p}");
        }
        assert!((chi_square_sf(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-12);
        assert_eq!(chi_square_sf(0.0, 3.0), 1.0);
    }

    #[test]
    fn chi_square_survival_matches_closed_forms() {
        // Even degrees of freedom have a closed form: e^(-x/2) * sum_{i < k/2} (x/2)^i / i!.
        for x in [0.01f64, 0.5, 3.3, 10.0, 42.0, 150.0] {
            let h = x / 2.0;
            let k2 = (-h).exp();
            let k4 = (-h).exp() * (1.0 + h);
            assert!((chi_square_sf(x, 2.0) - k2).abs() < 1e-12, "k=2, x={x}");
            assert!((chi_square_sf(x, 4.0) - k4).abs() < 1e-12, "k=4, x={x}");
        }
        assert!(chi_square_sf(1.0, 0.0).is_nan());
    }

    #[test]
    fn js_distance_bounds() {
        let a = [0, 10, 0, 0, 0];
        let b = [0, 0, 0, 10, 0];
        assert!((js_distance(&a, &b) - 1.0).abs() < 1e-12);
        assert_eq!(js_distance(&a, &a), 0.0);
    }

    #[test]
    fn robust_stats_ignore_one_outlier() {
        let (m, mad) = robust_stats(&[2.0, 3.0, 2.0, 3.0, 2.0, 100.0]);
        assert_eq!(m, 2.5);
        assert!((mad - 0.7413).abs() < 1e-3);
    }
}
