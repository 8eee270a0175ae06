"""Draw the figures of docs/concepts.md (no sampling: closed forms, grids and NumPy draws).

Run from the repository root::

    .venv/bin/python docs/_scripts/make_concept_figures.py

It writes ``docs/_static/concepts/*.png`` (committed) in a few seconds.  Every number on the
figures comes from the formulas in this file; nothing is fitted by MCMC.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import optimize, stats  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "_static" / "concepts"
plt.rcParams.update(
    {
        "figure.dpi": 110,
        "savefig.dpi": 110,
        # large type: the figures are shown scaled down to the text column (~750 px)
        "font.size": 15,
        "axes.titlesize": 15.5,
        "legend.fontsize": 13,
        "xtick.labelsize": 13.5,
        "ytick.labelsize": 13.5,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)
BLUE, ORANGE, GREY, RED, GREEN = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728", "#2ca02c"


def one_cmt_oral(t, dose, cl, v, ka):
    """C(t) of a one-compartment model with first-order absorption (ka != k)."""
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, bbox_inches="tight")
    plt.close(fig)
    print("wrote", OUT / name)


# ----------------------------------------------------------------------------- 1. two layers
def two_layers():
    rng = np.random.default_rng(3)
    t = np.linspace(0.01, 24, 300)
    dose, cl, v, ka = 320.0, 2.8, 32.0, 1.5
    omega = np.array([0.3, 0.15, 0.5])
    eta = rng.normal(0, omega, size=(8, 3))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.0))
    ax = axes[0]
    for e in eta:
        ax.plot(t, one_cmt_oral(t, dose, cl * np.exp(e[0]), v * np.exp(e[1]), ka * np.exp(e[2])),
                color=BLUE, alpha=0.55, lw=1.2)
    ax.plot(t, one_cmt_oral(t, dose, cl, v, ka), color="black", lw=2.5,
            label="typical subject (η = 0): PRED")
    ax.plot([], [], color=BLUE, label="8 subjects: CLᵢ = CL·exp(η_CL,i), ...")
    ax.set(xlabel="time (h)", ylabel="concentration (mg/L)",
           title="Layer 1: between subjects (Ω)")
    ax.legend(frameon=False, fontsize=12.5)
    ax = axes[1]
    e = eta[2]
    ci = one_cmt_oral(t, dose, cl * np.exp(e[0]), v * np.exp(e[1]), ka * np.exp(e[2]))
    sigma = 0.6
    tobs = np.array([0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 24])
    cobs = one_cmt_oral(tobs, dose, cl * np.exp(e[0]), v * np.exp(e[1]), ka * np.exp(e[2]))
    yobs = cobs + rng.normal(0, sigma, size=tobs.size)
    ax.fill_between(t, ci - 2 * sigma, ci + 2 * sigma, color=ORANGE, alpha=0.2,
                    label="IPRED ± 2σ (residual error)")
    ax.plot(t, ci, color=ORANGE, lw=2, label="this subject's curve: IPRED")
    ax.plot(t, one_cmt_oral(t, dose, cl, v, ka), color="black", lw=1.5, ls="--",
            label="typical subject: PRED")
    ax.plot(tobs, yobs, "o", color="black", ms=5, label="observations DV")
    ax.set(xlabel="time (h)", ylabel="concentration (mg/L)",
           title="Layer 2: within a subject (σ)")
    ax.legend(frameon=False, fontsize=12.5)
    fig.tight_layout()
    save(fig, "two_layers.png")


# ----------------------------------------------------------------------------- 2. log-normal
def lognormal():
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    ax = axes[0]
    x = np.linspace(0.01, 12, 600)
    pop = 3.0
    for omega, c in [(0.1, BLUE), (0.3, ORANGE), (0.6, RED)]:
        dens = stats.lognorm(s=omega, scale=pop).pdf(x)
        ax.plot(x, dens, color=c, lw=2, label=f"ω = {omega}")
        mean = pop * np.exp(omega**2 / 2)
        ax.axvline(mean, color=c, ls=":", lw=1.2)
    ax.axvline(pop, color="black", lw=1.2)
    ax.text(pop * 1.3, ax.get_ylim()[1] * 0.95, "← CL_pop = median", fontsize=12.5)
    ax.set(xlabel="individual CLᵢ = CL_pop · exp(ηᵢ),  ηᵢ ~ N(0, ω²)", ylabel="density",
           title="Log-normal random effects: positive, skewed")
    ax.legend(frameon=False, title="dotted: mean = CL_pop·exp(ω²/2)", title_fontsize=12)
    ax = axes[1]
    om = np.linspace(0, 1.2, 200)
    ax.plot(om, 100 * np.sqrt(np.exp(om**2) - 1), color=BLUE, lw=2,
            label="exact: CV = √(exp(ω²) − 1)")
    ax.plot(om, 100 * om, color=GREY, ls="--", lw=1.5, label="approximation CV ≈ ω")
    ax.set(xlabel="ω (SD of η)", ylabel="CV %", title="ω as a coefficient of variation")
    ax.legend(frameon=False)
    fig.tight_layout()
    save(fig, "lognormal.png")


# ----------------------------------------------------------------------------- 3. Omega
def omega_covariance():
    rng = np.random.default_rng(1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.0))
    om = np.array([0.3, 0.2])
    for ax, rho, title in [(axes[0], 0.0, "diagonal Ω (ρ = 0)"),
                           (axes[1], 0.75, "full block Ω (ρ = 0.75)")]:
        cov = np.array([[om[0] ** 2, rho * om[0] * om[1]], [rho * om[0] * om[1], om[1] ** 2]])
        eta = rng.multivariate_normal([0, 0], cov, size=300)
        ax.scatter(eta[:, 0], eta[:, 1], s=8, alpha=0.5, color=BLUE)
        w, vecs = np.linalg.eigh(cov)
        ang = np.linspace(0, 2 * np.pi, 200)
        for k, ls in [(1, "-"), (2, "--")]:
            ell = (vecs @ np.diag(np.sqrt(w) * k) @ np.vstack([np.cos(ang), np.sin(ang)]))
            ax.plot(ell[0], ell[1], color="black", ls=ls, lw=1.2)
        ax.set(xlabel="η_CL", ylabel="η_V", title=title, xlim=(-1.1, 1.1), ylim=(-0.75, 0.75))
        ax.set_aspect("equal")
    axes[1].text(-1.05, 0.62, "Ω = diag(ω) · R · diag(ω)", fontsize=12.5)
    ax = axes[2]
    r = np.linspace(-0.999, 0.999, 400)
    for eta_lkj, c in [(1.0, GREY), (2.0, BLUE), (4.0, ORANGE)]:
        # For a 2x2 correlation matrix LKJ(eta) gives (r + 1)/2 ~ Beta(eta, eta).
        ax.plot(r, stats.beta(eta_lkj, eta_lkj).pdf((r + 1) / 2) / 2, color=c, lw=2,
                label=f"LKJ(η = {eta_lkj:g})" + ("  (uniform)" if eta_lkj == 1 else "")
                + ("  default" if eta_lkj == 2 else ""))
    ax.set(xlabel="correlation ρ(η_CL, η_V)", ylabel="prior density",
           title="LKJ prior on the correlations", ylim=(0, 1.75))
    ax.legend(frameon=False, fontsize=12.5, loc="upper center")
    fig.tight_layout()
    save(fig, "omega_covariance.png")


# ----------------------------------------------------------------------------- 4. shrinkage
def shrinkage():
    """Normal-normal model (exact): y_ij = mu + eta_i + eps_ij."""
    rng = np.random.default_rng(7)
    mu, omega, sigma = 0.0, 0.3, 0.5
    n = np.array([1, 1, 1, 2, 2, 3, 5, 8, 12, 20])
    eta = rng.normal(0, omega, n.size)
    own = np.array([rng.normal(mu + e, sigma, k).mean() for e, k in zip(eta, n, strict=True)])
    b = (sigma**2 / n) / (sigma**2 / n + omega**2)  # posterior shrinkage towards mu
    post = b * mu + (1 - b) * own
    post_sd = np.sqrt(1 / (n / sigma**2 + 1 / omega**2))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.25, 1]})
    ax = axes[0]
    order = np.argsort(n)
    for rank, i in enumerate(order):
        ax.annotate("", xy=(post[i], rank), xytext=(own[i], rank),
                    arrowprops=dict(arrowstyle="->", color=GREY, lw=1.2))
        ax.plot(own[i], rank, "o", mfc="white", mec=BLUE, ms=7)
        ax.errorbar(post[i], rank, xerr=1.96 * post_sd[i], fmt="o", color=BLUE, ms=6,
                    capsize=2, lw=1)
    ax.axvline(mu, color="black", lw=1.2)
    ax.set_yticks(range(n.size), [f"{n[i]} obs" for i in order])
    ax.set(xlabel="ηᵢ (e.g. log CLᵢ − log CL_pop)",
           title="Borrowing strength: own data ○ → posterior ●")
    ax.text(mu + 0.015, n.size - 0.35, "population", fontsize=12.5)
    ax.set_ylim(-0.6, n.size + 0.1)
    ax = axes[1]
    nn = np.linspace(0.5, 25, 300)
    for ratio, c in [(0.5, BLUE), (1.0, ORANGE), (2.0, RED)]:
        s = ratio * omega
        ax.plot(nn, (s**2 / nn) / (s**2 / nn + omega**2), color=c, lw=2,
                label=f"σ/ω = {ratio:g}")
    ax.set(xlabel="observations per subject", ylabel="shrinkage Var_post(ηᵢ)/ω²",
           title="Shrinkage falls as a subject's data grow", ylim=(0, 1))
    ax.legend(frameon=False)
    fig.tight_layout()
    save(fig, "shrinkage.png")


# ----------------------------------------------------------------------------- 5. AIC vs LOO
def aic_vs_loo():
    """Effective number of parameters of a normal-normal model vs what AIC counts."""
    n_subj, n_obs, sigma = 12, 10, 1.0
    ratio = np.logspace(-2, 1, 200)  # omega / sigma
    omega = ratio * sigma
    # observation-level: mu + sigma + sum_i leverage of subject i's mean
    p_obs = 2 + n_subj * (n_obs * omega**2) / (n_obs * omega**2 + sigma**2)
    fig, ax = plt.subplots(figsize=(9, 5.2))
    ax.semilogx(ratio, p_obs, color=BLUE, lw=2.5,
                label="effective parameters p (what LOO/WAIC see)")
    ax.axhline(3, color=RED, ls="--", lw=2, label="AIC's count: μ, ω, σ = 3")
    ax.axhline(n_subj + 2, color=GREY, ls=":", lw=2,
               label=f"no pooling: {n_subj} subject means + μ + σ")
    ax.set(xlabel="ω / σ (between- vs within-subject SD)", ylabel="parameters",
           title=f"{n_subj} subjects × {n_obs} observations: how many parameters?")
    ax.legend(frameon=False, loc="center right")
    fig.tight_layout()
    save(fig, "aic_vs_loo.png")


# ----------------------------------------------------------------------------- 6. FOCE vs MCMC
def foce_vs_mcmc():
    """A rugged likelihood: one subject, one-compartment oral (flip-flop), and a variance
    component at its boundary. Exact grid posteriors vs the local (mode + curvature) view."""
    dose, v_true, ka_true, k_true = 100.0, 10.0, 1.0, 0.25
    t = np.array([0.5, 1, 2, 4, 6, 8, 12, 24])
    rng = np.random.default_rng(11)
    c = one_cmt_oral(t, dose, k_true * v_true, v_true, ka_true)
    y = c * np.exp(rng.normal(0, 0.12, t.size))

    def profile(lka, lk):
        """Log-likelihood (log-normal error, sigma 0.12) maximised over V in closed form."""
        ka, k = np.exp(lka), np.exp(lk)
        g = dose * ka / (ka - k) * (np.exp(-k * t) - np.exp(-ka * t))  # = V * C
        logv = np.mean(np.log(g) - np.log(y))
        r = np.log(y) - (np.log(g) - logv)
        return -0.5 * np.sum(r**2) / 0.12**2

    grid = np.linspace(-3.2, 1.8, 241)
    ll = np.array([[profile(a, b) if abs(a - b) > 1e-6 else np.nan for a in grid] for b in grid])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    ax = axes[0]
    levels = np.nanmax(ll) - np.array([40, 20, 10, 5, 2, 0.5])[::-1][::-1]
    ax.contourf(grid, grid, ll, levels=np.sort(np.r_[levels, np.nanmax(ll) + 1]), cmap="Blues")
    ax.plot(grid, grid, color=GREY, lw=0.8, ls=":")
    found = []
    for start, col in [((-1.0, -2.5), RED), ((-2.5, -0.5), ORANGE)]:
        res = optimize.minimize(lambda x: -profile(*x), start, method="BFGS")
        found.append(res)
        ax.annotate("", xy=res.x, xytext=start,
                    arrowprops=dict(arrowstyle="->", color=col, lw=1.5))
        ax.plot(*start, "s", color=col, ms=6)
        ax.plot(*res.x, "*", color=col, ms=14, mec="black")
    ax.set(xlabel="log ka", ylabel="log k = log(CL/V)",
           title="Two modes (flip-flop): a local optimiser\nfinds the one nearest its start")
    # marginal of log ka: exact (grid, flat prior) vs the Gaussian at one mode
    ax = axes[1]
    w = np.exp(ll - np.nanmax(ll))
    w = np.nan_to_num(w)
    marg = w.sum(axis=0)
    step = grid[1] - grid[0]
    marg /= marg.sum() * step
    ax.plot(grid, marg, color=BLUE, lw=2.2, label="whole posterior (what MCMC samples)")
    res = found[0]
    hess_inv = np.asarray(res.hess_inv)
    sd = np.sqrt(hess_inv[0, 0])
    ax.plot(grid, stats.norm(res.x[0], sd).pdf(grid), color=RED, lw=1.8, ls="--",
            label="mode + curvature (FOCE-like)")
    ax.set(xlabel="log ka", ylabel="density", title="What the two views report for ka")
    ax.legend(frameon=False, fontsize=12.5)
    # a variance component at its boundary: normal-normal, 8 subjects, small omega
    ax = axes[2]
    n_subj, n_obs, sigma = 8, 3, 1.0
    # a study whose ML estimate of omega is at the boundary (0), as happens with sparse data
    for seed in range(100):
        rng = np.random.default_rng(seed)
        ybar = rng.normal(0, 0.3, n_subj) + rng.normal(0, sigma / np.sqrt(n_obs), n_subj)
        if ybar.var() < sigma**2 / n_obs * 0.8:
            break
    om = np.linspace(1e-4, 1.6, 800)

    def marg_ll(o):
        var = o**2 + sigma**2 / n_obs
        mu_hat = ybar.mean()
        return np.sum(stats.norm(mu_hat, np.sqrt(var)).logpdf(ybar))

    mll = np.array([marg_ll(o) for o in om])
    post = np.exp(mll - mll.max()) * stats.halfnorm(scale=1.0).pdf(om)
    post /= post.sum() * (om[1] - om[0])
    ax.plot(om, post, color=BLUE, lw=2.2, label="posterior of ω (HalfNormal(1) prior)")
    lik = np.exp(mll - mll.max())
    ax.plot(om, lik * post.max(), color=GREY, lw=1.5, ls=":", label="likelihood profile (scaled)")
    i_max = int(np.argmax(mll))
    ax.axvline(om[i_max], color=RED, lw=2, ls="--", label=f"ML estimate ω = {om[i_max]:.2f}")
    q95 = om[np.searchsorted(np.cumsum(post) / post.sum(), 0.95)]
    ax.axvspan(0, q95, color=BLUE, alpha=0.08, label=f"95 % of the posterior: ω < {q95:.2f}")
    ax.set(xlabel="ω (between-subject SD)", ylabel="density",
           title="A variance at its boundary: ML says 0,\nthe posterior: 'small, but uncertain'")
    ax.legend(frameon=False, fontsize=12, loc="center right", bbox_to_anchor=(1.0, 0.62))
    fig.tight_layout()
    save(fig, "foce_vs_mcmc.png")


if __name__ == "__main__":
    two_layers()
    lognormal()
    omega_covariance()
    shrinkage()
    aic_vs_loo()
    foce_vs_mcmc()
