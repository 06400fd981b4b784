//! The statistics the detectors rely on: robust location and scale, and the chi-square
//! and Jensen-Shannon comparisons of two severity mixes.

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

/// P(X >= x) for X chi-square with `k` degrees of freedom.
pub fn chi_square_sf(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    upper_regularized_gamma(k / 2.0, x / 2.0)
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Q(a, x) = Γ(a, x) / Γ(a): series below a + 1, continued fraction above.
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut del, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * (-x + a * x.ln() - gln).exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        ((-x + a * x.ln() - gln).exp() * h).clamp(0.0, 1.0)
    }
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
