process.env.WPFARM_LAB = 'user';
