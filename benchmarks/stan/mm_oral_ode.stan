// One-compartment oral model with Michaelis-Menten elimination, integrated by Stan's
// ode_rk45_tol (solver = 0) or ode_bdf_tol (solver = 1) from dose to dose: every subject's
// history is cut into segments that start at a dose (added to the depot) and end at the next
// dose; each segment is one solver call whose output times are the segment's observations
// and its end.  An observation at a dose time is taken before the dose.  Random effects on
// (log Vmax, log V, log ka), non-centred and LKJ-correlated; Km has none; proportional error.
// Same parameterisation and priors as nlme_bayes' builder.
functions {
  vector mm_rhs(real t, vector y, real vmax, real km, real v, real ka) {
    vector[2] dydt;
    real c = y[2] / v;
    dydt[1] = -ka * y[1];
    dydt[2] = ka * y[1] - vmax * c / (km + c);
    return dydt;
  }
  vector mm_ipred(matrix eta, vector log_pop, array[] int seg_subj, array[] int seg_new,
                  array[] real seg_t0, vector seg_amt, array[] int seg_first,
                  array[] int seg_last, array[] real ts, array[] int obs_ts, int solver,
                  data real rtol, data real atol, int max_steps) {
    int N_ts = size(ts);
    vector[rows(eta)] Vmax = exp(log_pop[1] + eta[:, 1]);
    real Km = exp(log_pop[2]);
    vector[rows(eta)] V = exp(log_pop[3] + eta[:, 2]);
    vector[rows(eta)] ka = exp(log_pop[4] + eta[:, 3]);
    vector[N_ts] c;
    vector[2] y = rep_vector(0.0, 2);
    for (s in 1:size(seg_subj)) {
      int i = seg_subj[s];
      int n = seg_last[s] - seg_first[s] + 1;
      array[n] vector[2] sol;
      if (seg_new[s]) y = rep_vector(0.0, 2);
      y[1] += seg_amt[s];
      if (solver == 0) {
        sol = ode_rk45_tol(mm_rhs, y, seg_t0[s], ts[seg_first[s]:seg_last[s]], rtol, atol,
                           max_steps, Vmax[i], Km, V[i], ka[i]);
      } else {
        sol = ode_bdf_tol(mm_rhs, y, seg_t0[s], ts[seg_first[s]:seg_last[s]], rtol, atol,
                          max_steps, Vmax[i], Km, V[i], ka[i]);
      }
      for (j in 1:n) c[seg_first[s] + j - 1] = sol[j][2] / V[i];
      y = sol[n];
    }
    return c[obs_ts];
  }
}
data {
  int<lower=1> N_subj;
  int<lower=1> N_obs;
  int<lower=1> N_seg;
  array[N_seg] int<lower=1, upper=N_subj> seg_subj;
  array[N_seg] int<lower=0, upper=1> seg_new;     // first segment of its subject
  array[N_seg] real seg_t0;
  vector[N_seg] seg_amt;                          // dose into the depot at seg_t0
  array[N_seg] int<lower=1> seg_first;            // its output times: ts[seg_first:seg_last]
  array[N_seg] int<lower=1> seg_last;
  int<lower=1> N_ts;
  array[N_ts] real ts;
  array[N_obs] int<lower=1, upper=N_ts> obs_ts;   // observation -> output time
  vector[N_obs] dv;
  int<lower=0, upper=1> solver;
  real<lower=0> rtol;
  real<lower=0> atol;
  int<lower=1> max_steps;
  vector[4] mu_pop;          // priors of log Vmax, log Km, log V, log ka
  vector<lower=0>[4] sd_pop;
  vector<lower=0>[3] omega_scale;
  real<lower=0> lkj_eta;
  int<lower=0, upper=1> full_omega;  // 0: diagonal Omega (L is then the identity, no LKJ term)
  real<lower=0> sigma_scale;
  real<lower=0> prop_floor;  // the builder's floor of the proportional SD
  int<lower=0, upper=1> gq;  // compute the predictions in generated quantities
}
parameters {
  vector[4] log_pop;
  vector<lower=0>[3] omega;
  cholesky_factor_corr[full_omega ? 3 : 0] L_free;
  matrix[3, N_subj] z;
  real<lower=0> sigma;
}
transformed parameters {
  matrix[3, 3] L;
  if (full_omega) {
    L = L_free;
  } else {
    L = identity_matrix(3);
  }
}
model {
  vector[N_obs] ipred = mm_ipred((diag_pre_multiply(omega, L) * z)', log_pop, seg_subj,
                                 seg_new, seg_t0, seg_amt, seg_first, seg_last, ts, obs_ts,
                                 solver, rtol, atol, max_steps);
  log_pop ~ normal(mu_pop, sd_pop);
  omega ~ normal(0, omega_scale);
  if (full_omega) L_free ~ lkj_corr_cholesky(lkj_eta);
  to_vector(z) ~ std_normal();
  sigma ~ normal(0, sigma_scale);
  // proportional error with the builder's floor: SD = sigma * sqrt(ipred^2 + prop_floor^2),
  // prop_floor = 1e-6 x the median positive DV (nlme_bayes.builder.PROPORTIONAL_FLOOR), so a
  // solver's tiny negative undershoot at concentrations near zero (1e-7 mg/L after 48 h at
  // 10 mg) gives a finite SD, exactly as in our model
  dv ~ normal(ipred, sigma * sqrt(square(ipred) + square(prop_floor)));
}
generated quantities {
  // the predictions, only on request (gq = 1: the accuracy check at a fixed point)
  vector[gq ? N_obs : 0] ipred_gq;
  if (gq) {
    ipred_gq = mm_ipred((diag_pre_multiply(omega, L) * z)', log_pop, seg_subj, seg_new, seg_t0,
                        seg_amt, seg_first, seg_last, ts, obs_ts, solver, rtol, atol,
                        max_steps);
  }
}
