#!/usr/bin/env python3
"""Regenerates the coefficients of the engine's exp polynomial (shared/engine/src/fastmath.rs):
a near-minimax fit of e^r on |r| <= ln2/2 by interpolation at Chebyshev nodes, computed with
60-digit arithmetic and rounded to doubles; prints the fit's worst relative error.

    pip install mpmath && python3 bench/fit_exp_polynomial.py
"""
from mpmath import cos, exp, log, lu_solve, matrix, mp, mpf, pi

mp.dps = 60
DEGREE = 11
HALF_LN2 = log(2) / 2

nodes = [HALF_LN2 * cos(pi * (2 * k + 1) / (2 * (DEGREE + 1))) for k in range(DEGREE + 1)]
a = matrix(DEGREE + 1, DEGREE + 1)
b = matrix(DEGREE + 1, 1)
for i, x in enumerate(nodes):
    for j in range(DEGREE + 1):
        a[i, j] = x**j
    b[i] = exp(x)
coefficients = [float(c) for c in lu_solve(a, b)]

worst = mpf(0)
for k in range(4001):
    x = -HALF_LN2 + 2 * HALF_LN2 * k / 4000
    p = mpf(0)
    for c in reversed(coefficients):
        p = p * x + mpf(c)
    worst = max(worst, abs(p - exp(x)) / exp(x))
print("const EXP_COEFFICIENTS: [f64; %d] = [" % (DEGREE + 1))
for c in coefficients:
    print("    %r," % c)
print("];  // worst relative error of the polynomial: %.3g" % float(worst))
