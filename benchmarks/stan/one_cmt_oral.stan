// One-compartment model, first-order absorption, closed form with superposition over
// dose-observation pairs; additive error.  The same model, parameterisation and priors as
// nlme_bayes' builder for theophylline_model(): log-normal typical values (sampled on the
// log scale), random effects on (log CL, log V, log ka) -- centered = 0: non-centred,
// eta_i = diag(omega) * L * z_i; centered = 1: the individual log parameters
// phi_i ~ MVN(log typical, diag(omega) L L' diag(omega)) are sampled (the builder's centred
// form) -- LKJ prior on the correlation, half-normal SDs, half-Student-t residual SD.
data {
  int<lower=1> N_subj;
  int<lower=1> N_obs;
  int<lower=1> N_pair;
  array[N_pair] int<lower=1, upper=N_obs> pair_obs;
  array[N_pair] int<lower=1, upper=N_subj> pair_subj;
  vector<lower=0>[N_pair] pair_dose;
  vector<lower=0>[N_pair] pair_dt;
  int<lower=0, upper=1> one_pair_per_obs;  // single dose: pair p is observation p
  vector[N_obs] dv;
  vector[3] mu_pop;        // priors of log CL, log V, log ka
  vector<lower=0>[3] sd_pop;
  vector<lower=0>[3] omega_scale;  // half-normal
  real<lower=0> lkj_eta;
  real<lower=0> sigma_nu;
  real<lower=0> sigma_scale;      // half-Student-t
  int<lower=0, upper=1> centered;
}
parameters {
  vector[3] log_pop;
  vector<lower=0>[3] omega;
  cholesky_factor_corr[3] L;
  matrix[3, centered ? 0 : N_subj] z;
  matrix[centered ? N_subj : 0, 3] phi;
  real<lower=0> sigma;
}
model {
  matrix[N_subj, 3] eta;
  if (centered) {
    for (i in 1:N_subj) eta[i] = phi[i] - log_pop';
  } else {
    eta = (diag_pre_multiply(omega, L) * z)';
  }
  vector[N_subj] CL = exp(log_pop[1] + eta[:, 1]);
  vector[N_subj] V = exp(log_pop[2] + eta[:, 2]);
  vector[N_subj] ka = exp(log_pop[3] + eta[:, 3]);
  vector[N_subj] k = CL ./ V;
  vector[N_pair] kp = k[pair_subj];
  vector[N_pair] kap = ka[pair_subj];
  vector[N_pair] c = pair_dose .* kap ./ (V[pair_subj] .* (kap - kp))
                     .* (exp(-kp .* pair_dt) - exp(-kap .* pair_dt));
  vector[N_obs] mu;
  if (one_pair_per_obs) {
    mu = c;
  } else {
    mu = rep_vector(0.0, N_obs);
    for (p in 1:N_pair) mu[pair_obs[p]] += c[p];
  }
  log_pop ~ normal(mu_pop, sd_pop);
  omega ~ normal(0, omega_scale);
  L ~ lkj_corr_cholesky(lkj_eta);
  if (centered) {
    matrix[3, 3] Lcov = diag_pre_multiply(omega, L);
    for (i in 1:N_subj) phi[i] ~ multi_normal_cholesky(log_pop, Lcov);
  } else {
    to_vector(z) ~ std_normal();
  }
  sigma ~ student_t(sigma_nu, 0, sigma_scale);
  dv ~ normal(mu, sigma);
}
