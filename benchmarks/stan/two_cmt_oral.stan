// Two-compartment model, first-order absorption, closed form (tri-exponential) with
// superposition over dose-observation pairs (multiple doses); proportional error.
// Random effects on (log CL, log V, log V2, log ka), LKJ-correlated; Q has no random effect.
// centered = 0: eta = diag(omega) L z, z ~ N(0, 1) (non-centred); centered = 1: the
// individual log parameters phi ~ MVN(log typical, diag(omega) L L' diag(omega)) are sampled
// (Monolix's phi; nlme_bayes' centred form).  Same parameterisation and priors as
// nlme_bayes' builder.
data {
  int<lower=1> N_subj;
  int<lower=1> N_obs;
  int<lower=1> N_pair;
  array[N_pair] int<lower=1, upper=N_obs> pair_obs;
  array[N_pair] int<lower=1, upper=N_subj> pair_subj;
  vector<lower=0>[N_pair] pair_dose;
  vector<lower=0>[N_pair] pair_dt;
  vector[N_obs] dv;
  vector[5] mu_pop;        // priors of log CL, log V, log Q, log V2, log ka
  vector<lower=0>[5] sd_pop;
  vector<lower=0>[4] omega_scale;
  real<lower=0> lkj_eta;
  real<lower=0> sigma_scale;   // half-normal, proportional SD
  int<lower=0, upper=1> centered;
}
parameters {
  vector[5] log_pop;
  vector<lower=0>[4] omega;
  cholesky_factor_corr[4] L;
  matrix[4, centered ? 0 : N_subj] z;
  matrix[centered ? N_subj : 0, 4] phi;
  real<lower=0> sigma;
}
model {
  vector[4] mu_iiv = log_pop[{1, 2, 4, 5}];
  matrix[N_subj, 4] eta;
  if (centered) {
    for (i in 1:N_subj) eta[i] = phi[i] - mu_iiv';
  } else {
    eta = (diag_pre_multiply(omega, L) * z)';
  }
  vector[N_subj] CL = exp(log_pop[1] + eta[:, 1]);
  vector[N_subj] V = exp(log_pop[2] + eta[:, 2]);
  real Q = exp(log_pop[3]);
  vector[N_subj] V2 = exp(log_pop[4] + eta[:, 3]);
  vector[N_subj] ka = exp(log_pop[5] + eta[:, 4]);
  vector[N_subj] k10 = CL ./ V;
  vector[N_subj] k12 = Q ./ V;
  vector[N_subj] k21 = Q ./ V2;
  vector[N_subj] s = k10 + k12 + k21;
  vector[N_subj] disc = sqrt(square(s) - 4 * k10 .* k21);
  vector[N_subj] alpha = 0.5 * (s + disc);
  vector[N_subj] beta = 0.5 * (s - disc);
  // per-subject coefficients of exp(-alpha t), exp(-beta t), exp(-ka t), per unit dose
  vector[N_subj] ca = ka ./ V .* (k21 - alpha) ./ ((ka - alpha) .* (beta - alpha));
  vector[N_subj] cb = ka ./ V .* (k21 - beta) ./ ((ka - beta) .* (alpha - beta));
  vector[N_subj] cka = ka ./ V .* (k21 - ka) ./ ((alpha - ka) .* (beta - ka));
  vector[N_pair] c = pair_dose .* (ca[pair_subj] .* exp(-alpha[pair_subj] .* pair_dt)
                                   + cb[pair_subj] .* exp(-beta[pair_subj] .* pair_dt)
                                   + cka[pair_subj] .* exp(-ka[pair_subj] .* pair_dt));
  vector[N_obs] mu = rep_vector(0.0, N_obs);
  for (p in 1:N_pair) mu[pair_obs[p]] += c[p];
  log_pop ~ normal(mu_pop, sd_pop);
  omega ~ normal(0, omega_scale);
  L ~ lkj_corr_cholesky(lkj_eta);
  if (centered) {
    matrix[4, 4] Lcov = diag_pre_multiply(omega, L);
    for (i in 1:N_subj) phi[i] ~ multi_normal_cholesky(mu_iiv, Lcov);
  } else {
    to_vector(z) ~ std_normal();
  }
  sigma ~ normal(0, sigma_scale);
  dv ~ normal(mu, sigma * mu);
}
